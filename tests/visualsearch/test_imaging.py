from __future__ import annotations

import io

import pytest
from PIL import Image

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
