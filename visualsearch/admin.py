"""Visual-search actions on the catalog admin ("Find similar", "Reindex selected") and a read-only vector list.

catalog must not import visualsearch, so the catalog's admin classes are extended here and re-registered.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from catalog import admin as catalog_admin
from catalog.models import IndexStatus, Product, ProductImage

from . import services, tasks
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


def _reindex(modeladmin, request, images) -> None:
    """Hand the photos to the configured runner (inline, or Celery workers) like a save would."""
    ids = list(images.values_list("pk", flat=True))
    images.update(index_status=IndexStatus.PENDING, index_error="")
    if not tasks.schedule_reindex(ids):
        modeladmin.message_user(
            request, f"{len(ids)} photo(s) marked pending. More than {tasks.MAX_INLINE_IMAGES} are not indexed "
            "inside a web request: `manage.py reindex --missing` (or Celery workers) indexes them.", messages.WARNING
        )
        return
    pending = ProductImage.objects.filter(pk__in=ids).exclude(index_status=IndexStatus.INDEXED).count()
    level = messages.WARNING if pending else messages.SUCCESS
    modeladmin.message_user(
        request, f"{len(ids) - pending} of {len(ids)} photo(s) indexed; {pending} pending or failed "
        "(see the index status column; with Celery they are indexed by the workers).", level
    )


# Reindexing changes index state and runs the model: staff who may only view the catalog must not start it.
@admin.action(description="Reindex selected", permissions=["change"])
def reindex_images(modeladmin, request, queryset):
    _reindex(modeladmin, request, queryset)


@admin.action(description="Reindex selected", permissions=["change"])
def reindex_products(modeladmin, request, queryset):
    _reindex(modeladmin, request, ProductImage.objects.filter(product__in=queryset))


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
