from __future__ import annotations

import math

from django.conf import settings
from rest_framework import serializers


class SearchInputSerializer(serializers.Serializer):
    image = serializers.FileField(required=False, help_text="The query photo (JPEG, PNG, WebP, GIF, BMP, TIFF).")
    image_id = serializers.IntegerField(required=False, min_value=1, help_text="Search with a stored photo instead.")
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=10_000)
    threshold = serializers.FloatField(
        required=False, min_value=-1.0, max_value=1.0, help_text="Minimum cosine similarity; default from settings."
    )
    category = serializers.CharField(required=False, allow_blank=True, max_length=100)

    def validate_threshold(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number.")
        return value

    def validate_limit(self, value: int) -> int:
        return min(value, settings.VISUALSEARCH["MAX_RESULTS"])

    def validate(self, attrs: dict) -> dict:
        if ("image" in attrs) == ("image_id" in attrs):
            raise serializers.ValidationError("Send exactly one of `image` (a file) or `image_id`.")
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
    score = serializers.FloatField()
    product = ProductSummarySerializer()
    matched_image = MatchedImageSerializer(source="image")


class SearchOutputSerializer(serializers.Serializer):
    extractor = serializers.CharField(source="extractor_id")
    took_ms = serializers.FloatField()
    timings_ms = serializers.DictField(child=serializers.FloatField())
    results = MatchSerializer(source="matches", many=True)
