"""A small demo catalog of real photographs that scikit-image ships in its wheel (nothing is downloaded).

Each product gets its photo plus a second view (a crop, mirrored), and the motorcycle has two real photos from
two cameras, so "more photos per product" and "best photo per product" are visible in the demo.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageOps

SKIMAGE_DATA = "skimage.data"


@dataclass(frozen=True)
class DemoProduct:
    relation_id: str
    title: str
    category: str
    price: str
    files: tuple[str, ...]


DEMO_PRODUCTS = [
    DemoProduct("demo-cat-poster", "Tabby cat poster", "posters", "19.00", ("chelsea.png",)),
    DemoProduct("demo-espresso-cup", "Espresso cup", "kitchen", "12.50", ("coffee.png",)),
    DemoProduct("demo-astronaut-print", "Astronaut print", "posters", "24.00", ("astronaut.png",)),
    DemoProduct("demo-rocket", "Rocket launch photo", "posters", "18.00", ("rocket.jpg",)),
    DemoProduct("demo-motorcycle", "Motorcycle model", "toys", "89.00", ("motorcycle_left.png", "motorcycle_right.png")),
    DemoProduct("demo-deep-field", "Deep field poster", "posters", "21.00", ("hubble_deep_field.jpg",)),
    DemoProduct("demo-cameraman", "Cameraman print", "posters", "15.00", ("camera.png",)),
    DemoProduct("demo-coins", "Coin collection", "collectibles", "45.00", ("coins.png",)),
    DemoProduct("demo-moon", "Moon poster", "posters", "17.00", ("moon.png",)),
    DemoProduct("demo-brick", "Brick wallpaper", "home", "30.00", ("brick.png",)),
    DemoProduct("demo-grass", "Grass mat", "home", "22.00", ("grass.png",)),
    DemoProduct("demo-gravel", "Gravel tile", "home", "9.00", ("gravel.png",)),
    DemoProduct("demo-retina", "Retina art print", "posters", "20.00", ("retina.jpg",)),
    DemoProduct("demo-clock", "Wall clock", "home", "35.00", ("clock_motion.png",)),
    DemoProduct("demo-horse", "Horse silhouette sticker", "home", "5.00", ("horse.png",)),
]


def sample_path(filename: str) -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent / filename


def demo_photos(product: DemoProduct) -> list[tuple[str, bytes]]:
    """(filename, JPEG bytes) for a product: its real photos, plus a second view when it has only one."""
    photos = [(Path(f).stem + ".jpg", _jpeg(Image.open(sample_path(f)))) for f in product.files]
    if len(photos) == 1:
        original = Image.open(sample_path(product.files[0]))
        photos.append((Path(product.files[0]).stem + "-view2.jpg", _jpeg(_second_view(original))))
    return photos


def _second_view(image: Image.Image) -> Image.Image:
    """A centre crop of 80%, mirrored: a different framing of the same object."""
    w, h = image.size
    box = (w // 10, h // 10, w - w // 10, h - h // 10)
    return ImageOps.mirror(image.crop(box))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def price(product: DemoProduct) -> Decimal:
    return Decimal(product.price)
