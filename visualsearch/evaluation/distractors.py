"""Distractors: extra gallery photos that match no query, so a small labelled set is tested inside a big catalog.

Every image file under a folder (recursively) becomes a product of its own; ``copies`` augmented versions of each
(random crop, rotation, colour and brightness shift, JPEG re-encode; made in memory with a seed per file and copy,
so a run is repeatable) turn a few thousand real photos into ~10,000 distractors. Like the dataset's rows, nothing
outside the folder is read: a symlink that leads out of it is refused.
"""
from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from ..imaging import decode_image
from .dataset import DatasetError

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
COPY_SIDE = 1024  # copies are made from a reduced decode: catalog photos are analysed at this size anyway
_SHOWN = 5


@dataclass(frozen=True)
class Distractor:
    """One distractor photo: a file under the folder, as it is (``copy`` 0) or its ``copy``-th augmented version."""

    path: Path  # absolute, inside the folder
    relpath: str
    copy: int = 0

    @property
    def name(self) -> str:
        stem = Path(self.relpath).stem
        return f"{stem}.jpg" if self.copy else Path(self.relpath).name

    @property
    def key(self) -> str:
        return f"{self.relpath}#{self.copy}"


def find_distractors(root: str | Path, *, copies: int = 0, limit: int | None = None) -> list[Distractor]:
    """Every image file under ``root`` in a stable order, then its copies round by round (all first copies, then
    all second ones…), so that ``limit`` keeps as many different photos as it can. Raises DatasetError when the
    folder is missing, holds no image, or a symlink in it leads outside it."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"distractors: {root} is not a directory")
    files = list(_image_files(root))
    if not files:
        raise DatasetError(f"distractors: no {'/'.join(sorted(e[1:] for e in EXTENSIONS))} files under {root}")
    chosen = [Distractor(path, relpath, n) for n in range(copies + 1) for path, relpath in files]
    return chosen[:limit] if limit is not None else chosen


def _image_files(root: Path) -> list[tuple[Path, str]]:
    outside, seen, found = [], set(), []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(directory)
        for name in sorted(dirnames):
            path = here / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                outside.append(str(path.relative_to(root)))
            # a link to a folder inside root is not followed: its files are found under their real path
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            if path.suffix.lower() not in EXTENSIONS:
                continue
            real = path.resolve()
            if not real.is_relative_to(root):
                outside.append(str(path.relative_to(root)))
            elif real.is_file() and real not in seen:
                seen.add(real)
                found.append((path, path.relative_to(root).as_posix()))
    if outside:
        shown = "; ".join(outside[:_SHOWN]) + (f"; and {len(outside) - _SHOWN} more" if len(outside) > _SHOWN else "")
        raise DatasetError(f"distractors: {len(outside)} path(s) lead outside {root} through symlinks: {shown}")
    return found


def content(distractor: Distractor, *, max_pixels: int) -> bytes:
    """The file's bytes, or for a copy the augmented photo as JPEG; raises ImageRejected if it cannot be decoded."""
    data = distractor.path.read_bytes()
    if not distractor.copy:
        return data
    image = decode_image(data, max_pixels=max_pixels, min_side=COPY_SIDE // 2)
    return augment(image, seed=distractor.key)


def augment(image: Image.Image, *, seed: str) -> bytes:
    """A deterministic variation of a photo, as a shop might have another product shot like it: a 60–95 % crop,
    a rotation of up to ±15°, a colour, brightness and contrast shift, re-encoded as JPEG."""
    rng = random.Random(seed)  # str seeds are hashed with SHA-512: the same on every run and machine
    image = image.convert("RGB")
    if max(image.size) > COPY_SIDE:  # never enlarged: a copy is no sharper than its original
        image = ImageOps.contain(image, (COPY_SIDE, COPY_SIDE))
    w, h = image.size
    scale = rng.uniform(0.60, 0.95)
    cw, ch = max(1, round(w * scale)), max(1, round(h * rng.uniform(max(0.6, scale - 0.1), min(0.95, scale + 0.1))))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((left, top, left + cw, top + ch))
    fill = tuple(int(v) for v in image.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
    image = image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(70, 92))
    return buffer.getvalue()
