"""~1-megapixel product-like JPEGs made by augmenting the real photos in shared/data (never copied into the repo).

Each photo is a random crop (70–100 % of the side), maybe mirrored, with brightness/contrast jitter, scaled to
1152×864 and saved as JPEG quality 88, so every file is distinct (distinct SHA-256, so nothing is deduplicated by
the content-addressed embedding store). Photos are cached in the system temp dir between runs: generation
(≈20 ms a photo) is setup, not what is measured.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

SHARED_DATA = Path(os.environ.get("BENCH_SHARED_DATA", "/work/shared/data"))
SOURCE_DIRS = (SHARED_DATA / "ukbench-1000" / "images", SHARED_DATA / "grocery-packages" / "images")
SIZE = (1152, 864)  # 0.995 megapixel, 4:3 like most camera photos
QUALITY = 88
VERSION = 1  # bump when the recipe changes: the cache key includes it


@dataclass(frozen=True)
class Photo:
    path: str
    sha256: str
    width: int
    height: int
    source: str


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", Path(tempfile.gettempdir()) / "visualsearch-bench"))


def source_paths() -> list[Path]:
    paths = sorted(p for d in SOURCE_DIRS for p in d.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"bench: no source photos under {', '.join(map(str, SOURCE_DIRS))} (set BENCH_SHARED_DATA)")
    return paths


def photos(count: int, *, seed: int = 0, workers: int | None = None) -> list[Photo]:
    """The first ``count`` photos of the set named by ``seed``, generating (in parallel) the ones not cached yet."""
    folder = cache_root() / f"photos-v{VERSION}-{SIZE[0]}x{SIZE[1]}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    have = [Photo(**row) for row in json.loads(manifest.read_text())] if manifest.exists() else []
    have = [p for p in have if Path(p.path).exists()]
    if len(have) < count:
        have += _generate(folder, range(len(have), count), seed, workers or os.cpu_count() or 1)
        manifest.write_text(json.dumps([asdict(p) for p in have]))
    return have[:count]


def _generate(folder: Path, indexes: range, seed: int, workers: int) -> list[Photo]:
    chunks = [indexes[i : i + 250] for i in range(0, len(indexes), 250)]
    jobs = [(str(folder), list(chunk), seed) for chunk in chunks]
    if workers <= 1 or len(chunks) <= 1:
        results = [_generate_chunk(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_generate_chunk, *zip(*jobs)))
    return [photo for chunk in results for photo in chunk]


def _generate_chunk(folder: str, indexes: Sequence[int], seed: int) -> list[Photo]:
    sources = _sources()
    out = []
    for i in indexes:
        source = sources[i % len(sources)]
        image = augment(_open(source), np.random.default_rng([seed, i]))
        path = Path(folder) / f"{i:06d}.jpg"
        image.save(path, "JPEG", quality=QUALITY)
        data = path.read_bytes()
        out.append(Photo(str(path), hashlib.sha256(data).hexdigest(), *image.size, source.name))
    return out


@lru_cache(maxsize=1)
def _sources() -> list[Path]:
    return source_paths()


@lru_cache(maxsize=64)
def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random 4:3 crop of 70–100 % of the source, maybe mirrored, light colour jitter, scaled to :data:`SIZE`."""
    crop = _random_crop_box(image.size, rng)
    out = image.crop(crop)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.85, 1.15)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.85, 1.15)))
    return out.resize(SIZE, Image.Resampling.BILINEAR)


def _random_crop_box(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    width, height = size
    target = SIZE[0] / SIZE[1]
    scale = float(rng.uniform(0.7, 1.0))
    crop_w = min(width, height * target) * scale
    crop_h = crop_w / target
    left = float(rng.uniform(0, width - crop_w))
    top = float(rng.uniform(0, height - crop_h))
    return round(left), round(top), round(left + crop_w), round(top + crop_h)
