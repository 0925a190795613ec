"""`manage.py load_demo`: create the demo catalog (idempotent: existing demo products are left alone)."""
from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from catalog.demo import DEMO_PRODUCTS, demo_photos, price
from catalog.models import Product, ProductImage


class Command(BaseCommand):
    help = "Load a small demo catalog of real photos shipped by scikit-image."

    def handle(self, *args, **options) -> None:
        created = 0
        # One transaction: the photos are indexed together, in one batch, when it commits.
        with transaction.atomic():
            for demo in DEMO_PRODUCTS:
                product, is_new = Product.objects.get_or_create(
                    relation_id=demo.relation_id,
                    defaults={"title": demo.title, "category": demo.category, "price": price(demo)},
                )
                if not is_new:
                    continue
                created += 1
                for position, (name, data) in enumerate(demo_photos(demo)):
                    photo = ProductImage(product=product, position=position)
                    photo.image.save(name, ContentFile(data), save=False)
                    photo.save()
        self.stdout.write(f"load_demo: {created} products created, {len(DEMO_PRODUCTS) - created} already there")
