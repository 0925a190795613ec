"""Visual-search actions on the catalog admin ("Find similar", "Reindex selected") and a read-only vector list.

catalog must not import visualsearch, so the catalog's admin classes are extended here and re-registered.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils.html import format_html
from django.template.response import TemplateResponse

from catalog import admin as catalog_admin
from catalog.models import IndexStatus, Product, ProductImage

from . import services, tasks
from .backends.base import IndexUnavailable
from .imaging import ImageRejected
from .models import ImageEmbedding, UnmatchedSearch
from .registry import get_extractor

logger = logging.getLogger(__name__)
MAX_SIMILAR_QUERIES = 10  # selected items per "Find similar" page: each is one model call


def _similar_page(modeladmin, request, images: list[ProductImage]):
    """The nearest *other* products to each photo, whatever their score (staff compare; shoppers get the
    threshold), with the same bands as the storefront."""
    groups, errors = [], []
    for image in images[:MAX_SIMILAR_QUERIES]:
        own = frozenset(ProductImage.objects.filter(product_id=image.product_id).values_list("pk", flat=True))
        try:
            groups.append((image, services.search_by_image(image_id=image.pk, limit=12, threshold=-1.0,
                                                           exclude_image_ids=own)))
        except (ImageRejected, IndexUnavailable, OSError) as exc:
            errors.append(f"{image}: {exc}")
    for error in errors:
        modeladmin.message_user(request, error, messages.ERROR)
    context = {**modeladmin.admin_site.each_context(request), "title": "Similar products", "groups": groups,
               "opts": modeladmin.model._meta, "threshold": settings.VISUALSEARCH["SEARCH_THRESHOLD"]}
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
        progress = reverse("admin:catalog_productimage_changelist") + "?indexed=no"
        modeladmin.message_user(request, format_html(
            '{} photo(s) queued for indexing in the background. <a href="{}">Photos not indexed yet</a> shows the '
            "progress (the list shrinks as they are done; any left there after a restart are caught up by "
            "<code>manage.py reindex --missing</code>).", len(ids), progress), messages.INFO)
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


# A new photo at least this close to another product's photo (or recognised as it) is reported to staff: the same
# picture filed under two products confuses shoppers and splits their results.
NEAR_DUPLICATE_SCORE = 0.95


def _warn_about_duplicates(modeladmin, request, photos: list[ProductImage]) -> None:
    """Tell staff when a photo they just saved looks like another product's; the save stands either way."""
    for photo in photos:
        own = frozenset(ProductImage.objects.filter(product_id=photo.product_id).values_list("pk", flat=True))
        try:
            with photo.image.open("rb") as file:
                data = file.read()
            result = services.search_by_image(image_bytes=data, limit=1, threshold=NEAR_DUPLICATE_SCORE,
                                              exclude_image_ids=own)
        except (ImageRejected, IndexUnavailable, OSError) as exc:
            logger.info("no duplicate check for photo %s: %s", photo.pk, exc)
            continue
        for match in result.matches[:1]:
            if match.match != "exact" and match.score < NEAR_DUPLICATE_SCORE:
                continue
            link = reverse("admin:catalog_product_change", args=[match.product.pk])
            kind = "is the same product as" if match.match == "exact" else "looks like"
            modeladmin.message_user(request, format_html(
                'The photo {} of “{}” {} a photo of <a href="{}">{}</a> (score {}). It was saved; check that it '
                "belongs to this product.", photo.image.name.rsplit("/", 1)[-1], photo.product.title, kind, link,
                match.product, f"{match.score:.3f}"), messages.WARNING)


def _changed_photos(formset) -> list[ProductImage]:
    return [form.instance for form in formset.forms
            if "image" in form.changed_data and form.instance.pk and form not in formset.deleted_forms]


class ProductAdmin(catalog_admin.ProductAdmin):
    actions = [find_similar_products, reindex_products]

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is ProductImage:
            _warn_about_duplicates(self, request, _changed_photos(formset))


class IndexedFilter(admin.SimpleListFilter):
    """"Not indexed" = pending or failed: the photos a shopper's search cannot find yet."""

    title = "indexed"
    parameter_name = "indexed"

    def lookups(self, request, model_admin):
        return [("yes", "Indexed"), ("no", "Not indexed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(index_status=IndexStatus.INDEXED)
        if self.value() == "no":
            return queryset.exclude(index_status=IndexStatus.INDEXED)
        return queryset


class ProductImageAdmin(catalog_admin.ProductImageAdmin):
    actions = [find_similar_images, reindex_images]
    list_display = [*catalog_admin.ProductImageAdmin.list_display, "vector_model"]
    list_filter = [IndexedFilter, *catalog_admin.ProductImageAdmin.list_filter]

    def get_queryset(self, request):
        stored = ImageEmbedding.objects.filter(sha256=OuterRef("sha256"), extractor_id=get_extractor().id)
        return super().get_queryset(request).annotate(_has_vector=Exists(stored))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "image" in form.changed_data:
            _warn_about_duplicates(self, request, [obj])

    @admin.display(description="Vector", boolean=False)
    def vector_model(self, obj: ProductImage) -> str:
        """Which model's vector the photo has (the configured one), so staff see what a rebuild would redo."""
        return get_extractor().id if getattr(obj, "_has_vector", False) else "—"


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


@admin.register(UnmatchedSearch)
class UnmatchedSearchAdmin(admin.ModelAdmin):
    """What shoppers looked for and the catalog lacks (no photo unless KEEP_UNMATCHED_PHOTOS; rows expire)."""

    list_display = ["created_at", "source", "category", "filters", "best_score", "nearest_product", "photo_thumb"]
    list_filter = ["source", "category"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in UnmatchedSearch._meta.fields if f.name != "id"]

    def has_add_permission(self, request) -> bool:
        return False  # recorded by searches only

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Photo")
    def photo_thumb(self, obj: UnmatchedSearch) -> str:
        if not obj.photo:
            return "—"
        return format_html('<img src="{}" style="max-width:60px;max-height:60px" alt="">', obj.photo.url)
