from __future__ import annotations

from django.shortcuts import get_object_or_404, render

from .models import Product


def product_detail(request, pk: int):
    product = get_object_or_404(Product.objects.browsable().prefetch_related("images"), pk=pk)
    return render(request, "catalog/product_detail.html", {"product": product})
