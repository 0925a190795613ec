"""A compact byte format for one photo's recognition data (what is stored in the database per file and feature id).

Per keypoint 19 bytes: x, y as uint16 in 1/16 pixel (images up to 4096 px), scale as float16, angle as uint8 (1.4°
steps), the word id as uint32 and the 64-bit Hamming-embedding signature — 19 KB for 1,000 keypoints, no
descriptors. Little-endian, column by column, behind a small header, so decoding is a handful of ``frombuffer``.
"""
from __future__ import annotations

import struct

import numpy as np

from .verification import PhotoFeatures

_HEADER = struct.Struct("<4sHHI")  # magic, width, height, keypoint count
_MAGIC = b"LFv1"
_SUBPIXEL = 16.0
_COLUMNS = (("<u2", 2), ("<f2", 1), ("u1", 1), ("<u4", 1), ("<u8", 1))  # xy, scale, angle, word, signature
_BYTES_PER_KEYPOINT = sum(np.dtype(kind).itemsize * per_row for kind, per_row in _COLUMNS)


def pack(features: PhotoFeatures) -> bytes:
    n = len(features)
    keypoints = np.asarray(features.keypoints, dtype=np.float64).reshape(n, 4)
    xy = np.clip(np.round(keypoints[:, :2] * _SUBPIXEL), 0, 65535).astype("<u2")
    scale = keypoints[:, 2].astype("<f2")
    angle = (np.round(keypoints[:, 3] % 360.0 * 256.0 / 360.0) % 256).astype("u1")
    parts = [_HEADER.pack(_MAGIC, features.width, features.height, n), xy.tobytes(), scale.tobytes(), angle.tobytes(),
             np.asarray(features.words, dtype="<u4").tobytes(), np.asarray(features.signatures, dtype="<u8").tobytes()]
    return b"".join(parts)


def _header(data: bytes) -> tuple[int, int, int]:
    """(width, height, keypoints) of a record whose length matches its header, else ValueError."""
    if len(data) < _HEADER.size:
        raise ValueError("packed feature record is shorter than its header")
    magic, width, height, n = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a packed feature record (unknown format)")
    expected = _HEADER.size + n * _BYTES_PER_KEYPOINT
    if len(data) != expected:
        raise ValueError(f"packed feature record is {len(data)} bytes, expected {expected}")
    return width, height, n


def unpack(data: bytes | memoryview) -> PhotoFeatures:
    data = bytes(data)
    width, height, n = _header(data)
    offset, columns = _HEADER.size, []
    for kind, per_row in _COLUMNS:
        size = n * per_row * np.dtype(kind).itemsize
        columns.append(np.frombuffer(data, dtype=kind, count=n * per_row, offset=offset))
        offset += size
    xy, scale, angle, words, signatures = columns
    keypoints = np.empty((n, 4), dtype=np.float32)
    keypoints[:, :2] = xy.reshape(n, 2) / _SUBPIXEL
    keypoints[:, 2] = scale
    keypoints[:, 3] = angle.astype(np.float32) * (360.0 / 256.0)
    return PhotoFeatures(keypoints, words.astype(np.int64), signatures.astype(np.uint64), width, height)


def words_of(data: bytes | memoryview) -> np.ndarray:
    """Only the word ids of a packed record (what an index needs), int64 (n,), without unpacking the rest."""
    data = bytes(data)
    _, _, n = _header(data)
    offset = _HEADER.size + n * (4 + 2 + 1)  # past xy, scale, angle
    return np.frombuffer(data, dtype="<u4", count=n, offset=offset).astype(np.int64)
