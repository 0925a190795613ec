"""Visual-search actions on the catalog admin ("Find similar", "Reindex selected") and a read-only vector list.

catalog must not import visualsearch, so the catalog's admin classes are extended here and re-registered.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from catalog import admin as catalog_admin
from catalog.models import Product, ProductImage

from . import services
from .backends.base import IndexUnavailable
from .imaging import ImageRejected
from .models import ImageEmbedding

MAX_SIMILAR_QUERIES = 10  # selected items per "Find similar" page: each is one model call


def _similar_page(modeladmin, request, images: list[ProductImage]):
    groups, errors = [], []
    for image in images[:MAX_SIMILAR_QUERIES]:
        try:
            groups.append((image, services.search_by_image(image_id=image.pk, limit=12)))
        except (ImageRejected, IndexUnavailable, OSError) as exc:
            errors.append(f"{image}: {exc}")
    for error in errors:
        modeladmin.message_user(request, error, messages.ERROR)
    context = {**modeladmin.admin_site.each_context(request), "title": "Similar products", "groups": groups,
               "opts": modeladmin.model._meta}
    return TemplateResponse(request, "visualsearch/admin/similar.html", context)


@admin.action(description="Find similar products")
def find_similar_images(modeladmin, request, queryset):
    return _similar_page(modeladmin, request, list(queryset.select_related("product")))


@admin.action(description="Find similar products (main photo)")
def find_similar_products(modeladmin, request, queryset):
    images = [product.images.all()[0] for product in queryset.prefetch_related("images") if product.images.all()]
    return _similar_page(modeladmin, request, images)


@admin.action(description="Reindex selected")
def reindex_images(modeladmin, request, queryset):
    ids = list(queryset.values_list("pk", flat=True))
    services.sync_images(ids)
    modeladmin.message_user(request, f"Reindexed {len(ids)} photo(s); see the index status column for failures.")


@admin.action(description="Reindex selected")
def reindex_products(modeladmin, request, queryset):
    ids = list(ProductImage.objects.filter(product__in=queryset).values_list("pk", flat=True))
    services.sync_images(ids)
    modeladmin.message_user(request, f"Reindexed {len(ids)} photo(s) of {queryset.count()} product(s).")


class ProductAdmin(catalog_admin.ProductAdmin):
    actions = [find_similar_products, reindex_products]


class ProductImageAdmin(catalog_admin.ProductImageAdmin):
    actions = [find_similar_images, reindex_images]


admin.site.unregister(Product)
admin.site.unregister(ProductImage)
admin.site.register(Product, ProductAdmin)
admin.site.register(ProductImage, ProductImageAdmin)


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["sha256", "extractor_id", "dim", "created_at"]
    list_filter = ["extractor_id"]
    search_fields = ["sha256"]
    readonly_fields = ["sha256", "extractor_id", "dim", "created_at"]
    exclude = ["vector"]

    def has_add_permission(self, request) -> bool:
        return False  # vectors come from the model, never from a form
