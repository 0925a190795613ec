from __future__ import annotations

from rest_framework import viewsets
from rest_framework.pagination import LimitOffsetPagination

from ..models import Product
from .serializers import ProductSerializer


class ProductPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    """Active products with their photos (read-only; staff edit in the admin)."""

    serializer_class = ProductSerializer
    pagination_class = ProductPagination
    queryset = Product.objects.browsable().prefetch_related("images").order_by("pk")
