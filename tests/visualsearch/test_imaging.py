from __future__ import annotations

import functools
import io
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from tests.conftest import encode, scene
from visualsearch.imaging import ImageRejected, decode_image, read_limited

LIMIT = 40_000_000


def exif_rotated_jpeg() -> bytes:
    """A 200×100 landscape JPEG whose EXIF says 'rotate 90°': upright it is 100×200."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    return encode(scene(1, size=(200, 100)), "JPEG", exif=exif)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb(fmt):
    image = decode_image(encode(scene(2), fmt), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size[0] > 0


def test_exif_orientation_is_applied():
    assert decode_image(exif_rotated_jpeg(), max_pixels=LIMIT).size == (100, 200)


def test_transparent_png_becomes_rgb_on_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image = decode_image(encode(rgba, "PNG"), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "I;16", "1", "LA"])
def test_unusual_modes_become_rgb(mode):
    image = Image.new(mode, (16, 16))
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    assert decode_image(encode(image, fmt), max_pixels=LIMIT).mode == "RGB"


def test_a_phone_original_over_the_pixel_limit_is_accepted_as_a_jpeg_decoded_at_reduced_scale():
    # Scaled down 16×: a 3 MP JPEG against a 1 MP limit stands for a 48 MP phone original against the 16 MP default.
    original = encode(scene(6, size=(2000, 1500)))
    image = decode_image(original, max_pixels=1_000_000)
    assert image.width * image.height <= 1_000_000 and min(image.size) >= 256
    assert decode_image(original, max_pixels=1_000_000, long_side=800).width >= 800  # local features' size


def test_the_jpeg_allowance_never_lets_more_pixels_than_the_limit_be_decoded():
    original = encode(scene(6, size=(2000, 1500)))
    for decode in (lambda: decode_image(original, max_pixels=1_000_000, min_side=None),  # every pixel asked for
                   lambda: decode_image(original, max_pixels=1_000_000, min_side=1400)):  # too little reduction
        with pytest.raises(ImageRejected) as caught:
            decode()
        assert caught.value.code == "too_many_pixels"


def test_the_jpeg_allowance_is_bounded_and_other_formats_have_none():
    with pytest.raises(ImageRejected) as caught:  # 4.3 MP: over 4 × the limit even though 1/8 scale would fit
        decode_image(encode(Image.new("L", (2400, 1800))), max_pixels=1_000_000)
    assert caught.value.code == "too_many_pixels"
    with pytest.raises(ImageRejected) as caught:  # PNG has no reduced decoding: its full size counts
        decode_image(encode(Image.new("L", (2000, 1500)), "PNG"), max_pixels=1_000_000)
    assert caught.value.code == "too_many_pixels"


def _close(pixel, colour, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_iphone_heic_and_avif_photos_decode(fmt):
    image = decode_image(encode(Image.new("RGB", (96, 64), (200, 40, 30)), fmt, quality=90), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == (96, 64) and _close(image.getpixel((48, 32)), (200, 40, 30))


def test_cmyk_jpeg_keeps_its_colours():
    image = decode_image(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0))), max_pixels=LIMIT)  # pure red ink
    assert _close(image.getpixel((16, 16)), (255, 0, 0), tolerance=20)


def test_16_bit_png_is_scaled_not_clipped():
    ramp = Image.linear_gradient("L").resize((64, 256)).convert("I")  # dark at the top, light at the bottom
    wide = ramp.point(lambda v: v * 257).convert("I;16")  # 0…65535
    image = decode_image(encode(wide, "PNG"), max_pixels=LIMIT)
    top, bottom = image.getpixel((32, 2))[0], image.getpixel((32, 253))[0]
    assert top < 40 and bottom > 215  # a ramp, not all white


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_are_searched_by_their_first_frame(fmt):
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert _close(decode_image(data, max_pixels=LIMIT).getpixel((20, 20)), (250, 0, 0), tolerance=20)


def test_large_jpeg_is_decoded_at_reduced_scale_but_not_below_the_model_size():
    image = decode_image(encode(scene(3, size=(2400, 1800))), max_pixels=LIMIT)
    assert 256 <= min(image.size) < 1800


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty"),
        (b"definitely not an image", "not_an_image"),
        (b"%PDF-1.4 fake", "not_an_image"),
    ],
)
def test_non_images_are_rejected(data, code):
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, max_pixels=LIMIT)
    assert caught.value.code == code


def test_truncated_jpeg_is_rejected():
    data = encode(scene(4, size=(400, 400)))
    with pytest.raises(ImageRejected) as caught:
        decode_image(data[: len(data) // 2], max_pixels=LIMIT)
    assert caught.value.code == "corrupt"


def test_decompression_bomb_is_rejected_before_decoding():
    # A tiny PNG declaring 20000×20000 pixels: the header is checked before any pixel is allocated.
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageRejected) as caught:
        decode_image(bomb, max_pixels=LIMIT)
    assert caught.value.code == "too_many_pixels"


def test_read_limited_refuses_oversized_streams():
    with pytest.raises(ImageRejected) as caught:
        read_limited(io.BytesIO(b"x" * 101), max_bytes=100)
    assert caught.value.code == "too_large"
    assert read_limited(io.BytesIO(b"x" * 100), max_bytes=100) == b"x" * 100


def test_formats_outside_the_shop_list_are_refused():
    truncated_qoi = bytes.fromhex("716f69660000004e000000300301fe0ac81efdfdfdfdfd40fdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfd")  # made Pillow's QOI decoder raise IndexError (a 500)
    with pytest.raises(ImageRejected) as caught:
        decode_image(truncated_qoi, max_pixels=LIMIT)
    assert caught.value.code == "not_an_image"


def test_any_decoder_crash_is_a_clean_rejection(monkeypatch):
    def explode(self):
        raise IndexError("decoder bug")

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", explode)
    with pytest.raises(ImageRejected) as caught:
        decode_image(encode(scene(5), "PNG"), max_pixels=LIMIT)
    assert caught.value.code == "corrupt"


@functools.cache
def flat_png(width: int, height: int) -> bytes:
    """A valid RGBA PNG of one colour, written row by row so the test never holds its pixels: 6300×6300 is
    ~160 KiB on the wire and 151 MiB decoded."""
    row = b"\x00" + bytes([200, 30, 30, 255]) * width  # filter byte 0, then the pixels
    packer = zlib.compressobj(6)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, not interlaced
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_the_default_pixel_limit_refuses_a_small_png_with_many_pixels(settings):
    png = flat_png(6300, 6300)
    assert len(png) < 400_000
    with pytest.raises(ImageRejected) as caught:
        decode_image(png, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])
    assert caught.value.code == "too_many_pixels"


_PEAK_PROBE = """
import resource, sys
from visualsearch.imaging import decode_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = decode_image(data, max_pixels=40_000_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, image.mode, *image.size)
"""


def test_a_large_png_is_reduced_before_its_mode_is_converted(tmp_path):
    """Under the old 40 MP limit this PNG cost ~645 MiB (full-size RGBA copies, white background, alpha band);
    reduced strip by strip it costs its decoded size plus a little. Measured in a fresh process (Pillow's pixel
    memory is invisible to tracemalloc)."""
    path = tmp_path / "big.png"
    path.write_bytes(flat_png(6300, 6300))
    probe = subprocess.run([sys.executable, "-c", _PEAK_PROBE, str(path)], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2], env={"PATH": "/usr/bin:/bin"}, check=True)
    peak, mode, width, height = probe.stdout.split()
    assert mode == "RGB" and 256 <= min(int(width), int(height)) < 512
    assert int(peak) < 200 * 2**20, f"peak {int(peak) / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "mode, fmt", [("RGBA", "PNG"), ("RGB", "PNG"), ("P", "GIF"), ("L", "PNG"), ("1", "BMP"), ("CMYK", "TIFF"),
                  ("I;16", "PNG"), ("LA", "PNG"), ("RGB", "WEBP"), ("RGB", "JPEG")],
)
def test_every_format_is_reduced_to_what_the_model_needs(mode, fmt):
    image = scene(6, size=(2100, 1400)).convert(mode)
    decoded = decode_image(encode(image, fmt), max_pixels=LIMIT)
    assert decoded.mode == "RGB" and 256 <= min(decoded.size) < 512
    assert abs(decoded.size[0] / decoded.size[1] - 1.5) < 0.02


def test_transparency_is_white_after_reduction():
    rgba = Image.new("RGBA", (2000, 1000), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 1000, 1000))  # left half opaque blue, right half transparent red
    decoded = decode_image(encode(rgba, "PNG"), max_pixels=LIMIT)
    assert decoded.getpixel((10, 10)) == (0, 0, 255)
    assert decoded.getpixel((decoded.width - 10, 10)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_after_reduction(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW
    decoded = decode_image(encode(scene(1, size=(2000, 1000)), fmt, exif=exif), max_pixels=LIMIT)
    assert decoded.height > decoded.width


def test_callers_can_ask_for_more_resolution():
    data = encode(scene(3, size=(2400, 1800)), "PNG")
    assert min(decode_image(data, max_pixels=LIMIT, min_side=600).size) == 600  # 1/3: the largest factor that fits
    assert decode_image(data, max_pixels=LIMIT, min_side=None).size == (2400, 1800)


def test_concurrent_decodes_are_capped(settings, monkeypatch):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "MAX_CONCURRENT_DECODES": 2}
    busy, peak, lock = 0, 0, threading.Lock()
    real_load = ImageFile.ImageFile.load

    def slow_load(self):
        nonlocal busy, peak
        with lock:
            busy += 1
            peak = max(peak, busy)
        time.sleep(0.05)
        try:
            return real_load(self)
        finally:
            with lock:
                busy -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", slow_load)
    data = encode(scene(7), "PNG")
    threads = [threading.Thread(target=decode_image, args=(data,), kwargs={"max_pixels": LIMIT}) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2


@pytest.mark.parametrize("size", [(1152, 864), (864, 1152), (1600, 1600), (2400, 800)])
def test_a_long_side_is_kept_whatever_the_aspect_ratio(size):
    data = encode(Image.new("RGB", size, (120, 30, 200)))
    decoded = decode_image(data, max_pixels=16_000_000, long_side=800)
    assert 800 <= max(decoded.size) < 2 * 800 or max(decoded.size) == max(size)
    assert decoded.size[0] / decoded.size[1] == pytest.approx(size[0] / size[1], rel=0.01)


@pytest.mark.parametrize("size", [(1, 100), (5000, 10), (26, 1)])
def test_images_too_long_and_thin_to_be_a_product_photo_are_refused(size):
    """Found by bench.fuzz: a PNG declaring 1×100 000 pixels decoded nearly unreduced and broke the JPEG encoder."""
    with pytest.raises(ImageRejected) as caught:
        decode_image(encode(Image.new("RGB", size), "PNG"), max_pixels=LIMIT)
    assert caught.value.code == "bad_shape"
    assert decode_image(encode(Image.new("RGB", (250, 10)), "PNG"), max_pixels=LIMIT).size == (250, 10)  # 25:1
