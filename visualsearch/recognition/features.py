"""RootSIFT local features of one image.

SIFT (OpenCV, patent expired, Apache-2.0) on a greyscale copy downscaled to a fixed long side, so the cost per photo
is bounded whatever the upload size. RootSIFT (Arandjelović & Zisserman 2012: L1-normalise, square root) makes the
Euclidean distance behave like the Hellinger kernel, which matches and quantises better than raw SIFT.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# Catalog photos are analysed larger than queries: their features are computed once and must cover the product
# at the scales a shopper's (often closer, partial) photo shows it.
CATALOG_LONG_SIDE = 1024
QUERY_LONG_SIDE = 800
# Small photos (thumbnails, web shots) are enlarged to this long side first: SIFT finds few stable keypoints in a
# 200-pixel image, and enlarging is cheap.
MIN_LONG_SIDE = 480


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints and descriptors of one image.

    ``keypoints``: float32 (n, 4) = x, y (pixels of the analysed image), scale (SIFT size), angle (degrees).
    ``descriptors``: float32 (n, 128), RootSIFT (unit L2 rows).
    ``width``/``height``: size of the analysed image, so coordinates can be related to the photo's area.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.keypoints)


def greyscale(image: Image.Image, long_side: int) -> np.ndarray:
    """uint8 (h, w) greyscale copy with its long side at ``long_side`` (down- or moderately up-scaled)."""
    grey = image.convert("L")
    scale = long_side / max(grey.size)
    if scale < 1 or max(grey.size) < MIN_LONG_SIDE:
        scale = scale if scale < 1 else MIN_LONG_SIDE / max(grey.size)
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0 if scale < 1 else None)
    return np.asarray(grey, dtype=np.uint8)


def extract(grey: np.ndarray, *, max_features: int = 1000) -> LocalFeatures:
    """The ``max_features`` strongest RootSIFT features of a uint8 greyscale image."""
    sift = cv2.SIFT_create(nfeatures=max_features)
    keypoints, descriptors = sift.detectAndCompute(np.ascontiguousarray(grey), None)
    height, width = grey.shape[:2]
    if descriptors is None or not keypoints:
        return LocalFeatures(np.empty((0, 4), np.float32), np.empty((0, 128), np.float32), width, height)
    # SIFT may return a few more than asked (ties) and duplicates at one location with two orientations: keep both
    # orientations (they describe different gradients) but never more than asked.
    keypoints, descriptors = keypoints[:max_features], descriptors[:max_features]
    geometry = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], dtype=np.float32)
    return LocalFeatures(geometry, root_sift(descriptors), width, height)


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """float32 (n, 128) RootSIFT from raw SIFT descriptors: L1-normalise, then square root (unit L2 rows)."""
    descriptors = np.array(descriptors, dtype=np.float32)  # a copy: the caller's array stays as it was
    descriptors /= np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(descriptors)
