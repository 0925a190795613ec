"""Synthetic textured images for the recognition tests: deterministic per seed, rich in SIFT keypoints."""
from __future__ import annotations

import random
import string

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PRODUCT_SIZE = (480, 480)  # the catalog photo, (w, h)
SCENE_SIZE = (640, 640)  # the query: the product warped into clutter


def texture(seed: int, size: tuple[int, int] = (480, 480)) -> Image.Image:
    """A busy 'product': a gradient, many small shapes, letters of varying sizes and a little noise (RGB)."""
    rng = random.Random(seed)
    w, h = size
    gx = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    gy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    c0, c1, c2 = (np.array([rng.randrange(256) for _ in range(3)], np.float32) for _ in range(3))
    background = c0 + (c1 - c0) * gx + (c2 - c0) * gy
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)

    def colour() -> tuple[int, int, int]:
        return tuple(rng.randrange(256) for _ in range(3))

    for _ in range(90):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(4, 28)
        kind = rng.choice(["ellipse", "rectangle", "polygon", "line"])
        if kind == "polygon":
            points = [(x + rng.randrange(-r, r + 1), y + rng.randrange(-r, r + 1)) for _ in range(rng.randrange(3, 6))]
            draw.polygon(points, fill=colour())
        elif kind == "line":
            draw.line((x, y, x + rng.randrange(-3 * r, 3 * r), y + rng.randrange(-3 * r, 3 * r)), fill=colour(),
                      width=rng.randrange(1, 5))
        else:
            getattr(draw, kind)((x - r, y - r, x + r + rng.randrange(r), y + r), fill=colour(), outline=colour())
    for _ in range(45):
        font = ImageFont.load_default(size=rng.randrange(10, 40))
        text = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randrange(1, 6)))
        draw.text((rng.randrange(w), rng.randrange(h)), text, fill=colour(), font=font)
    noise = np.random.default_rng(seed).normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.uint8)


def known_homography(size: tuple[int, int], canvas: tuple[int, int]) -> np.ndarray:
    """Product → scene: scale 0.7, 8° rotation, mild perspective, placed inside ``canvas`` (w, h)."""
    w, h = size
    angle = np.deg2rad(8.0)
    centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)
    similarity = np.array([[0.7 * np.cos(angle), -0.7 * np.sin(angle), 0],
                           [0.7 * np.sin(angle), 0.7 * np.cos(angle), 0], [0, 0, 1]], np.float64)
    perspective = np.array([[1, 0, 0], [0, 1, 0], [2.5e-4, -1.5e-4, 1]], np.float64)
    place = np.array([[1, 0, canvas[0] / 2 + 15], [0, 1, canvas[1] / 2 - 10], [0, 0, 1]], np.float64)
    return place @ perspective @ similarity @ centre


def paste_warped(product: np.ndarray, clutter: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """``product`` (uint8 grey) warped by ``homography`` over ``clutter`` (uint8 grey, the scene's size)."""
    h, w = clutter.shape
    warped = cv2.warpPerspective(product, homography, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full_like(product, 255), homography, (w, h), flags=cv2.INTER_NEAREST)
    return np.where(mask > 0, warped, clutter).astype(np.uint8)


def corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)


def project(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points[None].astype(np.float64), np.asarray(homography, np.float64))[0]
