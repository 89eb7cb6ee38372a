"""Decoding, validation, letterbox/squash and the way back to the image, on awkward images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from converseg_ros.engine.postprocess import logits_to_image
from converseg_ros.errors import ImageError
from converseg_ros.imaging import SquashGeometry, as_rgb, decode_image, letterbox, letterbox_geometry, to_square


@pytest.mark.parametrize("hw", [(1, 1), (3, 600), (601, 7), (333, 555), (1024, 1024), (1500, 999)])
def test_letterbox_then_crop_back_restores_the_image_grid(hw):
    height, width = hw
    size = 64
    geo = letterbox_geometry(height, width, size)
    assert max(geo.new_height, geo.new_width) == size and min(geo.new_height, geo.new_width) >= 1
    assert 0 <= geo.top <= size - geo.new_height and 0 <= geo.left <= size - geo.new_width
    # a logit map that is +1 inside the letterboxed content and -1 on the padding crops back to exactly +1:
    # not one padding value leaks in (an off-by-one crop would bring in a row or column of -1)
    square = -torch.ones(1, size, size)
    square[:, geo.top : geo.top + geo.new_height, geo.left : geo.left + geo.new_width] = 1.0
    full = logits_to_image(square, geo)
    assert full.shape == (1, height, width)
    torch.testing.assert_close(full, torch.ones_like(full), rtol=0, atol=1e-6)


def test_squash_keeps_relative_positions_and_sam2_transform_is_the_authors():
    from sam2.utils.transforms import SAM2Transforms

    from converseg_ros.modeling.sam2_model import to_sam_pixels

    image = np.random.default_rng(0).integers(0, 256, (30, 70, 3), dtype=np.uint8)
    pixels, geo = to_square(image, "squash", 64)
    assert pixels is image and geo == SquashGeometry(30, 70, 64)
    # SAM2's transform (what SAM2ImagePredictor.set_image applies) squashes the same way, in float
    theirs = SAM2Transforms(resolution=64, mask_threshold=0.0)(image)
    torch.testing.assert_close(to_sam_pixels([image], 64)[0], theirs, rtol=0, atol=1e-5)
    boxed, _ = to_square(image, "letterbox", 64)
    torch.testing.assert_close(to_sam_pixels([boxed], 64)[0], SAM2Transforms(64, 0.0)(boxed), rtol=0, atol=1e-6)
    # the low-res square maps onto the whole image: its left half is the image's left half
    low = torch.where(torch.arange(16) < 8, 1.0, -1.0).expand(1, 16, 16)
    full = logits_to_image(low, geo)[0]
    assert full.shape == (30, 70)
    assert (full[:, :33] > 0).all() and (full[:, 37:] < 0).all()
    with pytest.raises(ValueError, match="preprocess"):
        to_square(image, "stretch", 64)


def test_letterbox_pads_centred_with_black():
    image = np.full((10, 40, 3), 200, np.uint8)
    square, geo = letterbox(image, 20)
    assert square.shape == (20, 20, 3) and (geo.new_height, geo.new_width, geo.top) == (5, 20, 7)
    assert square[:7].max() == 0 and square[12:].max() == 0 and square[7:12].min() == 200


def test_banker_rounding_as_reference():
    assert letterbox_geometry(5, 8, 4).new_height == round(5 * 0.5)  # 2.5 -> 2


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_gray_rgba_16bit_are_converted():
    gray = decode_image(_png(np.arange(12, dtype=np.uint8).reshape(3, 4)))
    assert gray.shape == (3, 4, 3) and (gray[..., 0] == gray[..., 2]).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    assert decode_image(_png(rgba)).tolist() == [[[255, 0, 0]] * 2] * 2  # alpha dropped like convert("RGB")
    sixteen = decode_image(_png(np.array([[0, 65535], [257, 32896]], dtype=np.uint16)))
    assert sixteen[..., 0].tolist() == [[0, 255], [1, 128]]
    assert as_rgb(np.array([[0, 65535]], dtype=np.uint16))[0, :, 1].tolist() == [0, 255]


def test_exif_orientation_applied_once():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = 255  # left half white
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(image).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(buffer.getvalue())
    assert decoded.shape == (40, 20, 3)
    assert decoded[:20].mean() > 200 and decoded[20:].mean() < 50  # white half now on top


@pytest.mark.parametrize(
    "bad",
    [b"", b"not an image at all", _png(np.zeros((1, 250), np.uint8))],  # empty, garbage, aspect > 200
)
def test_undecodable_or_extreme_images_refused(bad):
    with pytest.raises(ImageError):
        decode_image(bad)


def test_huge_image_refused_before_decoding():
    huge = Image.new("L", (9000, 10))
    buffer = io.BytesIO()
    huge.save(buffer, format="PNG")
    with pytest.raises(ImageError, match="too large"):
        decode_image(buffer.getvalue())


def test_missing_file_named(tmp_path):
    with pytest.raises(ImageError, match="absent.png"):
        decode_image(tmp_path / "absent.png")
