"""The shop's pages for shoppers: the catalog by category, a page at a time, and each product."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from .models import Product

PRODUCTS_PER_PAGE = 24


def product_list(request):
    """The front page: browsable products, optionally of one category; an unknown category says so (404)."""
    categories = Product.objects.browsable().categories()
    category = request.GET.get("category", "")
    products = Product.objects.browsable().prefetch_related("images")  # ordered by position: the first is the main
    status, error = 200, None
    if category and category not in categories:
        status, error = 404, f"There is no category called “{category[:100]}”."
        products = products.none()
    elif category:
        products = products.filter(category=category)
    page = Paginator(products, PRODUCTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page": page, "categories": categories, "category": category, "error": error}
    return render(request, "catalog/product_list.html", context, status=status)


def product_detail(request, pk: int):
    product = get_object_or_404(Product.objects.browsable().prefetch_related("images"), pk=pk)
    return render(request, "catalog/product_detail.html", {"product": product})
