from __future__ import annotations

import math
from decimal import Decimal

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import category_exists

from ..services.search import Box

@extend_schema_field(OpenApiTypes.STR)
class BoxField(serializers.Field):
    """``"left,top,right,bottom"`` (or a list of four numbers in JSON) as fractions 0–1 of the photo's upright
    width and height: resolution-free, so a client that downscales before uploading keeps its box."""

    def to_internal_value(self, data) -> Box:
        try:
            return Box.parse(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: Box) -> str:
        return str(value)


class SearchInputSerializer(serializers.Serializer):
    image = serializers.FileField(required=False, help_text="The query photo (JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP, TIFF).")
    image_id = serializers.IntegerField(required=False, min_value=1, help_text="Search with a stored photo instead.")
    query = serializers.RegexField(r"^[0-9a-f]{32}$", required=False, help_text="The `query` handle of an earlier "
                                   "answer: search with its photo again (other filters, more pages) without uploading.")
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=10_000)
    threshold = serializers.FloatField(
        required=False, min_value=-1.0, max_value=1.0, help_text="Minimum cosine similarity; default from settings."
    )
    category = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                     help_text="Only products of this category (one of the shop's categories).")
    min_price = serializers.DecimalField(required=False, max_digits=10, decimal_places=2, min_value=Decimal(0),
                                         help_text="Only products priced at least this (products without a price "
                                                   "are left out when a price bound is given).")
    max_price = serializers.DecimalField(required=False, max_digits=10, decimal_places=2, min_value=Decimal(0),
                                         help_text="Only products priced at most this.")
    in_stock = serializers.BooleanField(required=False, default=False, source="in_stock_only",
                                        help_text="Only products in stock (or whose stock is not tracked).")
    box = BoxField(required=False, help_text="Optional part of the uploaded photo that shows the product: "
                   "`left,top,right,bottom` as fractions 0–1 of its width and height, e.g. `0.1,0.2,0.6,0.9`.")

    def validate_threshold(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number.")
        return value

    def validate_category(self, value: str) -> str:
        if value and not category_exists(value):
            raise serializers.ValidationError(f"Unknown category {value!r}.")
        return value

    def validate_limit(self, value: int) -> int:
        return min(value, settings.VISUALSEARCH["MAX_RESULTS"])

    def validate(self, attrs: dict) -> dict:
        if sum(name in attrs for name in ("image", "image_id", "query")) != 1:
            raise serializers.ValidationError("Send exactly one of `image` (a file), `image_id` or `query`.")
        if attrs.get("min_price") is not None and attrs.get("max_price") is not None \
                and attrs["min_price"] > attrs["max_price"]:
            raise serializers.ValidationError({"max_price": ["Must not be below min_price."]})
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
    query = serializers.SerializerMethodField(help_text="Handle of the uploaded photo, kept for a while (when a next "
                                              "page may exist): pass it as `query` instead of uploading again.")
    next = serializers.SerializerMethodField(help_text="URL of the next page (GET), or null when this page was "
                                             "not full.")

    def get_query(self, result) -> str | None:
        return self.context.get("query")

    def get_next(self, result) -> str | None:
        return self.context.get("next")
