"""Catalog admin: products with an inline of photos, thumbnails and index status. visualsearch adds its actions."""
from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html

from .models import Product, ProductImage


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
