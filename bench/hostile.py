"""Hostile uploads and parameters for the search endpoints: what a fuzz run (bench.fuzz) and the suite's short
version (tests/visualsearch/api/test_hostile_inputs.py) send. Every case must get an answer below 500, quickly.

Each case is (kind, files, fields): ``files`` maps a form field to (filename, bytes, content type).
"""
from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterator

from PIL import Image

FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF"]
CONTENT_TYPES = ["image/jpeg", "image/png", "application/octet-stream", "text/html", "image/svg+xml", ""]


def valid_image(rng: random.Random, fmt: str, size: tuple[int, int] | None = None) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    size = size or (rng.randint(1, 300), rng.randint(1, 300))
    image = Image.effect_noise(size, rng.randint(5, 120)).convert(rng.choice(["RGB", "L", "RGBA"]))
    if fmt in ("JPEG", "BMP") and image.mode == "RGBA":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb(rng: random.Random) -> bytes:
    """A small file declaring a huge image, in one of the formats Pillow opens."""
    w, h = rng.choice([(65535, 65535), (100_000, 1), (1, 100_000), (30_000, 30_000), (20_000, 20_000)])
    kind = rng.choice(["png", "gif", "bmp", "jpeg", "tiff", "webp"])
    if kind == "png":
        header = struct.pack(">IIBBBBB", min(w, 2**31 - 1), min(h, 2**31 - 1), 8, 2, 0, 0, 0)
        rows = zlib.compress(b"\x00" * 64)
        return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")
    if kind == "gif":
        return b"GIF89a" + struct.pack("<HH", min(w, 65535), min(h, 65535)) + b"\x00\x00\x00" + b",\x00\x00\x00\x00" \
            + struct.pack("<HH", min(w, 65535), min(h, 65535)) + b"\x00\x02\x02D\x01\x00;"
    if kind == "bmp":
        return b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 0, 0, 0, 0)
    if kind == "jpeg":
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, min(h, 65535), min(w, 65535), 1) + b"\x01\x11\x00"
        return b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 32 + b"\xff\xd9"
    if kind == "tiff":
        entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
                   (277, 3, 1, 1), (279, 4, 1, 1)]
        ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
        return b"II*\x00" + struct.pack("<I", 8 + 0) + ifd
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (min(w, 2**24) - 1).to_bytes(3, "little") \
        + (min(h, 2**24) - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def _mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    choice = rng.randrange(6)
    if choice == 0 and len(data) > 1:
        return "truncated", data[: rng.randrange(1, len(data))]
    if choice == 1:
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        return "bit_flips", bytes(flipped)
    if choice == 2:
        return "polyglot", data + rng.choice([b"<script>alert(1)</script>", b"PK\x03\x04" + b"\0" * 26, b"%PDF-1.7\n"])
    if choice == 3:
        cut = rng.randrange(len(data))
        return "spliced", data[:cut] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) + data[cut:]
    if choice == 4:
        return "header_only", data[: min(len(data), rng.choice([2, 8, 16, 64]))]
    return "doubled", data + data


NON_IMAGES = [b"", b"\x00", b"hello", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b"PK\x03\x04" + b"\0" * 100,
              b"\x7fELF\x02\x01\x01" + b"\0" * 60, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"GIF89a", b"\xff\xd8",
              b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"II*\x00", b"BM"]

ABSURD_FIELDS = [
    {"limit": "-1"}, {"limit": "1000000000000"}, {"limit": "abc"}, {"offset": "-5"}, {"offset": "9" * 40},
    {"threshold": "NaN"}, {"threshold": "inf"}, {"threshold": "-1e309"}, {"threshold": "2"},
    {"box": "0,0,0,0"}, {"box": "1,1,0,0"}, {"box": "nan,0,1,1"}, {"box": "0,0,1"}, {"box": "0,0,1,1,1"},
    {"box": "-1,-1,2,2"}, {"box": "0,0,0.001,0.001"}, {"box": "x" * 10_000}, {"box": "1e309,0,1,1"},
    {"category": "c" * 10_000}, {"category": "\u202e\u0000evil"}, {"min_price": "-1"}, {"min_price": "1e309"},
    {"max_price": "abc"}, {"min_price": "5", "max_price": "1"}, {"in_stock": "maybe"}, {"image_id": "0"},
    {"image_id": "9" * 30}, {"image_id": "-1"}, {"query": "../../../etc/passwd"}, {"query": "0" * 32},
]


def cases(count: int, seed: int = 0) -> Iterator[tuple[str, dict, dict]]:
    """``count`` hostile requests, reproducible from ``seed``."""
    rng = random.Random(seed)
    originals = [valid_image(rng, fmt) for fmt in FORMATS for _ in range(3)]
    for n in range(count):
        roll = rng.random()
        fields: dict = {}
        if roll < 0.55:
            kind, data = _mutate(rng, rng.choice(originals))
        elif roll < 0.70:
            kind, data = "bomb", bomb(rng)
        elif roll < 0.80:
            kind, data = "non_image", rng.choice(NON_IMAGES)
        elif roll < 0.95:
            kind, data = "absurd_fields", rng.choice(originals)
            fields = dict(rng.choice(ABSURD_FIELDS))
        else:
            kind, data = "valid", rng.choice(originals)
        name = rng.choice(["photo.jpg", "x.png", "../../etc/passwd", "a" * 300 + ".jpg", "résumé.heic", ""])
        files = {"image": (name or "upload", data, rng.choice(CONTENT_TYPES))}
        if fields.get("image_id") or fields.get("query"):
            files = {}
        yield kind, files, fields
