from __future__ import annotations

import math

from django.conf import settings
from rest_framework import serializers

from ..services.search import Box

MIN_BOX_SIDE = 0.02  # a box thinner than 2 % of the photo holds too few pixels to search with


class BoxField(serializers.Field):
    """``"left,top,right,bottom"`` (or a list of four numbers in JSON) as fractions 0–1 of the photo's upright
    width and height: resolution-free, so a client that downscales before uploading keeps its box."""

    default_error_messages = {
        "format": "Give four numbers: left,top,right,bottom as fractions 0–1 of the photo's width and height.",
        "range": "Need 0 <= left < right <= 1 and 0 <= top < bottom <= 1, each side at least 2 % of the photo.",
    }

    def to_internal_value(self, data) -> Box:
        parts = data.split(",") if isinstance(data, str) else data
        if not isinstance(parts, (list, tuple)) or len(parts) != 4:
            self.fail("format")
        try:
            left, top, right, bottom = (float(p) for p in parts)
        except (TypeError, ValueError):
            self.fail("format")
        if not all(math.isfinite(v) for v in (left, top, right, bottom)):
            self.fail("format")
        if not (0 <= left and right <= 1 and 0 <= top and bottom <= 1
                and right - left >= MIN_BOX_SIDE and bottom - top >= MIN_BOX_SIDE):
            self.fail("range")
        return Box(left, top, right, bottom)

    def to_representation(self, value: Box) -> str:
        return f"{value.left},{value.top},{value.right},{value.bottom}"


class SearchInputSerializer(serializers.Serializer):
    image = serializers.FileField(required=False, help_text="The query photo (JPEG, PNG, WebP, GIF, BMP, TIFF).")
    image_id = serializers.IntegerField(required=False, min_value=1, help_text="Search with a stored photo instead.")
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=10_000)
    threshold = serializers.FloatField(
        required=False, min_value=-1.0, max_value=1.0, help_text="Minimum cosine similarity; default from settings."
    )
    category = serializers.CharField(required=False, allow_blank=True, max_length=100)
    box = BoxField(required=False, help_text="Optional part of the uploaded photo that shows the product: "
                   "`left,top,right,bottom` as fractions 0–1 of its width and height, e.g. `0.1,0.2,0.6,0.9`.")

    def validate_threshold(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number.")
        return value

    def validate_limit(self, value: int) -> int:
        return min(value, settings.VISUALSEARCH["MAX_RESULTS"])

    def validate(self, attrs: dict) -> dict:
        if ("image" in attrs) == ("image_id" in attrs):
            raise serializers.ValidationError("Send exactly one of `image` (a file) or `image_id`.")
        if "box" in attrs and "image_id" in attrs:
            raise serializers.ValidationError({"box": ["A box applies to an uploaded photo, not to `image_id`."]})
        return attrs


class ProductSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    category = serializers.CharField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    url = serializers.SerializerMethodField()

    def get_url(self, product) -> str:
        return self.context["request"].build_absolute_uri(product.get_absolute_url())


class MatchedImageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()

    def get_url(self, image) -> str:
        return self.context["request"].build_absolute_uri(image.image.url)


class MatchSerializer(serializers.Serializer):
    relation_id = serializers.CharField(source="product.relation_id")
    match = serializers.ChoiceField(choices=["exact", "similar"], help_text="`exact`: recognised as this very "
                                    "product by its local features (verified geometrically); `similar`: looks alike.")
    score = serializers.FloatField(help_text="Cosine similarity of the global vectors of the query and the photo.")
    inliers = serializers.IntegerField(help_text="Verified local-feature correspondences with the photo (0: none).")
    product = ProductSummarySerializer()
    matched_image = MatchedImageSerializer(source="image")


class SearchOutputSerializer(serializers.Serializer):
    extractor = serializers.CharField(source="extractor_id")
    took_ms = serializers.FloatField()
    timings_ms = serializers.DictField(child=serializers.FloatField())
    results = MatchSerializer(source="matches", many=True)
