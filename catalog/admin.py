"""Catalog admin: products with an inline of photos, thumbnails and index status. visualsearch adds its actions."""
from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.db.models import Count
from django.utils.html import format_html

from . import import_jobs
from .models import CatalogImport, Product, ProductImage


def thumbnail(image: ProductImage, size: int = 80) -> str:
    if not image.image:
        return "—"
    return format_html(
        '<img src="{}" style="max-width:{}px;max-height:{}px;object-fit:contain" alt="">', image.image.url, size, size
    )


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 1
    fields = ["preview", "image", "position", "index_state", "index_error"]
    readonly_fields = ["preview", "index_state", "index_error"]
    ordering = ["position", "pk"]

    @admin.display(description="Photo")
    def preview(self, obj: ProductImage) -> str:
        return thumbnail(obj)

    @admin.display(description="Index status")
    def index_state(self, obj: ProductImage) -> str:
        return obj.get_index_status_display() if obj.pk else "—"  # an empty extra row is not "pending"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    change_list_template = "admin/catalog/product/change_list.html"  # + an "Import catalog" button
    list_display = ["main_photo", "title", "relation_id", "category", "price", "stock", "is_active", "photo_count"]
    list_display_links = ["main_photo", "title"]
    list_editable = ["price", "stock"]
    list_filter = ["is_active", "category"]
    search_fields = ["title", "relation_id", "description"]
    inlines = [ProductImageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_photo_count=Count("images")).prefetch_related("images")

    @admin.display(description="Photo")
    def main_photo(self, obj: Product) -> str:
        photos = obj.images.all()  # prefetched, ordered by position
        return thumbnail(photos[0], 48) if photos else "—"

    @admin.display(description="Photos", ordering="_photo_count")
    def photo_count(self, obj: Product) -> int:
        return obj._photo_count


@admin.register(ProductImage)
class ProductImageAdmin(admin.ModelAdmin):
    list_display = ["preview", "product", "position", "index_status", "indexed_at", "short_error"]
    list_filter = ["index_status", "product__category"]
    search_fields = ["product__title", "product__relation_id", "sha256"]
    list_select_related = ["product"]
    readonly_fields = ["preview", "sha256", "width", "height", "index_status", "index_error", "indexed_at"]
    autocomplete_fields = ["product"]

    @admin.display(description="Photo")
    def preview(self, obj: ProductImage) -> str:
        return thumbnail(obj, 60)

    @admin.display(description="Index error")
    def short_error(self, obj: ProductImage) -> str:
        return obj.index_error[:80]


@admin.register(CatalogImport)
class CatalogImportAdmin(admin.ModelAdmin):
    """Upload a CSV / JSON Lines file; the import runs in the background and this page shows its progress and
    the report of every row that failed."""

    list_display = ["__str__", "status", "progress", "created_at", "finished_at"]
    fields = ["file"]
    change_form_template = "admin/catalog/catalogimport/change_form.html"

    def get_fields(self, request, obj=None):
        return ["file"] if obj is None else ["file", "status", "progress", "summary_text", "error"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # results are read-only

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            transaction.on_commit(lambda: import_jobs.start(obj))

    @admin.display(description="Progress")
    def progress(self, obj: CatalogImport) -> str:
        return f"{obj.rows_done} of {obj.rows_total} rows" if obj.rows_total else "—"

    @admin.display(description="Summary")
    def summary_text(self, obj: CatalogImport) -> str:
        return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in obj.summary.items()) or "—"
