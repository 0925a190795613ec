"""Safe decoding of untrusted image uploads into RGB Pillow images.

Every upload is hostile until proven otherwise: size limits are checked before any pixel is decoded (against
decompression bombs), truncated or non-image data is rejected with a reason a shopper can read, EXIF orientation
is applied (phone photos), and any mode becomes RGB. Memory is bounded too: the image is brought down to the size
its caller needs before any full-size copy is made, and only a few decodes run at once per process.
"""
from __future__ import annotations

import functools
import io
import math
import os
import threading
import warnings
from typing import BinaryIO

from django.conf import settings
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

# The CNNs look at 224×224; decoding at a reduced scale that keeps both sides ≥ this size is several times faster
# and lighter than a full decode, and the resize to 224 stays a downscale. (448 would not let a 1-megapixel phone
# photo use even the 1/2 JPEG scale: measured decode 4.7 → 2.1 ms, extractor resize 6.8 → 2.1 ms.)
DRAFT_MIN_SIDE = 256

# Formats a shop photo comes in. Pillow can open many more (EPS via Ghostscript, odd scanner formats); each is
# attack surface we do not need, so only these decoders are ever tried. HEIF is what iPhones save (pillow-heif,
# libheif + libde265); AVIF is read by Pillow itself (≥ 11.2). Neither has reduced-scale decoding: MAX_PIXELS
# applies to them in full. Animated GIF/WebP/AVIF files are searched by their first frame.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")  # JPEG covers MPO files
pillow_heif.register_heif_opener(thumbnails=False)  # idempotent; adds the "HEIF" format to Pillow

# A JPEG asked for at a reduced size is decoded straight at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), so its
# full-size pixels are never held: its header may declare this many times the pixel limit, as long as what is
# actually decoded stays within it. That lets shoppers send phone originals as they are (24 MP by default on recent
# iPhones, 48–50 MP in full-resolution modes) while the decoded size, the memory, stays bounded by MAX_PIXELS.
# (Decoding time grows with the file's bytes, which MAX_UPLOAD_BYTES bounds.)
REDUCED_JPEG_ALLOWANCE = 4

# 16-bit / float greyscale: scaled to 8 bits by their own range, which must be measured on the whole image.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")
# Output rows per strip when reducing: a strip of the full-size image is converted at a time, never all of it.
_STRIP_ROWS = 8
# Longest side over shortest: a panorama is ~4:1; 1×100000 is no photo of a product, and would reach the models
# (and a JPEG encoder, which stops at 65 535 pixels) nearly unreduced, since only the short side limits reduction.
MAX_ASPECT_RATIO = 25
# EXIF orientation → the transpose that makes the photo upright (as ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRejected(ValueError):
    """The upload is not an image we can safely use; ``code`` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_limited(stream: BinaryIO, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` (plus one byte to detect overflow) so a huge upload is never held in full."""
    data = stream.read(max_bytes + 1)
    if not data:
        raise ImageRejected("empty", "The uploaded file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected("too_large", f"The image is larger than {max_bytes // (1024 * 1024)} MB.")
    return data


def decode_image(
    data: bytes, *, max_pixels: int, min_side: int | None = DRAFT_MIN_SIDE, long_side: int | None = None
) -> Image.Image:
    """Decode bytes into an upright RGB image, or raise ImageRejected.

    The image is reduced by an integer factor while both sides stay ≥ ``min_side`` (JPEG decodes at that scale
    directly); a stage that needs more detail asks for a larger ``min_side``, ``None`` keeps every pixel.
    ``long_side`` instead keeps the *long* side ≥ that many pixels, whatever the aspect ratio (local features are
    computed at a fixed long side).
    """
    if not data:
        raise ImageRejected("empty", "The uploaded file is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            if long_side:
                min_side = max(1, math.ceil(long_side * min(image.size) / max(image.size)))
            reducible = bool(min_side) and image.format == "JPEG"
            _check_pixels(image, max_pixels * REDUCED_JPEG_ALLOWANCE if reducible else max_pixels)
            with _decode_slot():
                return _decode(image, min_side, max_pixels)
        except ImageRejected:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _rejection(exc) from exc
        except Exception as exc:  # OSError, SyntaxError, IndexError…: every decoder has its own way to say "corrupt"
            raise ImageRejected("corrupt", "The image file is damaged or truncated.") from exc


def _decode(image: Image.Image, min_side: int | None, max_pixels: int) -> Image.Image:
    if min_side and image.format == "JPEG":
        image.draft("RGB", (min_side, min_side))
        _check_pixels(image, max_pixels)  # the size draft chose: what will really be decoded
    image.load()
    orientation = _orientation(image)  # read before reducing: the reduced copy has no EXIF
    rgb = _reduced_rgb(image, min_side) if min_side else to_rgb(image)
    method = _UPRIGHT.get(orientation)
    return rgb.transpose(method) if method else rgb


def _decode_slot() -> threading.BoundedSemaphore:
    """Each decode holds a full-size image for a moment; capping how many run at once caps the process's peak."""
    configured = settings.VISUALSEARCH.get("MAX_CONCURRENT_DECODES") if settings.configured else None
    return _semaphore(int(configured or len(os.sched_getaffinity(0))))


@functools.cache
def _semaphore(size: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(size)


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", "The image has no pixels.")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRejected("bad_shape", f"The image is {width}×{height} pixels: too long and thin to show a "
                            "product (at most 25 times longer than wide).")
    if width * height > max_pixels:
        raise ImageRejected(
            "too_many_pixels", f"The image is {width}×{height} pixels; the limit is {max_pixels:,} pixels."
        )


def _rejection(exc: Exception) -> ImageRejected:
    if isinstance(exc, UnidentifiedImageError):
        return ImageRejected("not_an_image", "The file is not an image in a supported format.")
    return ImageRejected("too_many_pixels", "The image has too many pixels to process safely.")


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return 1  # a damaged EXIF block must not lose an otherwise good photo


def _reduced_rgb(image: Image.Image, min_side: int) -> Image.Image:
    """RGB at 1/factor of the size, factor as large as keeps both sides ≥ ``min_side``.

    Converting the whole image first would make full-size copies (RGBA, a white background, the alpha band: a
    166 KiB 6300×6300 PNG cost 645 MiB), so strips of rows are converted and box-averaged one at a time.
    Flattening on white before averaging equals averaging premultiplied colours, as Image.reduce does.
    """
    factor = min(image.size) // min_side
    if factor < 2:
        return to_rgb(image)
    width, height = image.size
    if image.mode in _WIDE_MODES:  # their 8-bit scaling measures the whole range, so it runs after reducing
        return to_rgb(image.resize((-(-width // factor), -(-height // factor)), Image.Resampling.NEAREST))
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    step = factor * _STRIP_ROWS
    for top in range(0, height, step):
        strip = to_rgb(image.crop((0, top, width, min(height, top + step))))
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB; transparent areas become white (product shots are cut out on white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in _WIDE_MODES:
        # 16-bit / float greyscale: scale to 8 bits instead of clipping everything to white.
        image = ImageOps.autocontrast(image.convert("F").point(lambda v: v / 256).convert("L"))
    return image.convert("RGB")
