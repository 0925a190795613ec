from __future__ import annotations

from rest_framework import serializers

from ..models import Product, ProductImage


class ProductImageSerializer(serializers.ModelSerializer):
    url = serializers.ImageField(source="image", read_only=True)

    class Meta:
        model = ProductImage
        fields = ["id", "url", "width", "height", "position", "index_status"]


class ProductSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="catalog:product-detail")
    images = ProductImageSerializer(many=True, read_only=True)
    in_stock = serializers.BooleanField(read_only=True, help_text="Stock above zero, or stock not tracked.")

    class Meta:
        model = Product
        fields = ["id", "relation_id", "title", "description", "category", "price", "stock", "in_stock", "url",
                  "images"]
