"""Image codec round trips for every encoding, row padding, byte order, copies and refusals (no ROS graph)."""

from __future__ import annotations

import array
import sys

import numpy as np
import pytest

from converseg_ros.ros.msgs import image_codec as codec
from converseg_ros.ros.msgs.image_input import (
    check_compressed,
    check_image,
    compressed_to_rgb8,
    depth_to_m,
    image_to_rgb8,
)

Image = pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message wheels not installed").Image
CompressedImage = pytest.importorskip("sensor_msgs.msg").CompressedImage


def sample(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    kind, channels = codec.ENCODINGS[encoding]
    rng = np.random.default_rng(len(encoding))
    shape = (h, w) if channels == 1 else (h, w, channels)
    if kind == "f4":
        return rng.uniform(0.1, 9.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(np.dtype(kind)).max, shape, endpoint=True).astype(kind)


def raw_message(arr: np.ndarray, encoding: str, big_endian: bool, pad: int) -> Image:
    """Build a message by hand (independently of codec.encode): chosen byte order and row padding."""
    kind, _ = codec.ENCODINGS[encoding]
    rows = np.ascontiguousarray(arr.astype(np.dtype(kind).newbyteorder(">" if big_endian else "<")))
    rows = rows.reshape(arr.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((arr.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=int(big_endian))
    msg.step = padded.shape[1]
    msg.data = array.array("B", padded.tobytes())
    return msg


@pytest.mark.parametrize("encoding", list(codec.ENCODINGS))
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_decode_matches_for_every_encoding_order_and_padding(
    encoding: str, big_endian: bool, pad: int
) -> None:
    arr = sample(encoding)
    out = codec.decode(raw_message(arr, encoding, big_endian, pad))
    assert out.dtype.isnative and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", list(codec.ENCODINGS))
def test_encode_then_decode_round_trip(encoding: str) -> None:
    arr = sample(encoding, 4, 9)
    msg = codec.encode(arr, encoding, Image())
    assert msg.step == 9 * arr.itemsize * (1 if arr.ndim == 2 else arr.shape[2])
    assert msg.is_bigendian == int(sys.byteorder == "big") and len(msg.data) == msg.step * 4
    np.testing.assert_array_equal(codec.decode(msg), arr)


def test_decoded_array_is_a_copy_not_a_view_of_the_message() -> None:
    arr = sample("rgb8")
    msg = codec.encode(arr, "rgb8", Image())
    out = codec.decode(msg)
    msg.data[0] = (int(msg.data[0]) + 1) % 256
    assert out[0, 0, 0] == arr[0, 0, 0]
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize(
    ("encoding", "expect"),
    [
        ("rgb8", lambda a: a),
        ("bgr8", lambda a: a[:, :, ::-1]),
        ("rgba8", lambda a: a[:, :, :3]),
        ("bgra8", lambda a: a[:, :, 2::-1]),
        ("mono8", lambda a: np.stack([a] * 3, axis=2)),
        ("8UC1", lambda a: np.stack([a] * 3, axis=2)),
        ("mono16", lambda a: np.stack([np.round(a / 257).astype(np.uint8)] * 3, axis=2)),
    ],
)
def test_to_rgb8_channel_order(encoding: str, expect) -> None:
    arr = sample(encoding)
    rgb = image_to_rgb8(raw_message(arr, encoding, False, 2))
    assert rgb.dtype == np.uint8 and rgb.shape == (5, 7, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expect(arr))


def test_mask_is_mono8_0_255_with_header() -> None:
    from std_msgs.msg import Header

    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    msg = codec.encode_mask(mask, Image(), Header(frame_id="cam"))
    assert (msg.encoding, msg.width, msg.height, msg.step, msg.header.frame_id) == ("mono8", 4, 3, 4, "cam")
    assert sorted(set(msg.data)) == [0, 255] and msg.data[1 * 4 + 2] == 255


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("encoding", "yuv422", "unsupported image encoding"),
        ("encoding", "", "unsupported image encoding"),
        ("step", 5, "step shorter"),
        ("height", 0, "empty image"),
        ("width", 0, "empty image"),
        ("data", array.array("B", b"\x00" * 10), "truncated"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(field: str, value: object, reason: str) -> None:
    msg = codec.encode(sample("rgb8"), "rgb8", Image())
    setattr(msg, field, value)
    with pytest.raises(codec.ImageCodecError, match=reason):
        image_to_rgb8(msg, cv_bridge_policy="never")


def test_depth_encodings_refused_as_colour_but_decoded_as_depth() -> None:
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    msg = codec.encode(mm, "16UC1", Image())
    with pytest.raises(codec.ImageCodecError, match="depth"):
        image_to_rgb8(msg)
    depth = depth_to_m(msg, 0.001)
    assert np.isnan(depth[0, 0]) and depth[0, 1] == pytest.approx(1.0) and depth[1, 0] == pytest.approx(1.5)
    metres = codec.encode(np.array([[np.nan, 2.5]], np.float32), "32FC1", Image())
    assert depth_to_m(metres, 0.001)[0, 1] == pytest.approx(2.5)


def test_oversized_image_refused() -> None:
    msg = codec.encode(sample("mono8", 10, 10), "mono8", Image())
    with pytest.raises(codec.ImageCodecError, match="max_image_pixels"):
        image_to_rgb8(msg, max_pixels=99)


def test_compressed_png_and_garbage() -> None:
    import cv2

    rgb = sample("rgb8", 6, 8)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    out = compressed_to_rgb8(CompressedImage(format="png", data=array.array("B", png.tobytes())))
    np.testing.assert_array_equal(out, rgb)
    with pytest.raises(codec.ImageCodecError, match="compressed data is not"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=array.array("B", b"not an image")))
    with pytest.raises(codec.ImageCodecError, match="could not decode"):  # a JPEG header, then garbage
        compressed_to_rgb8(CompressedImage(format="jpeg", data=array.array("B", b"\xff\xd8\xff\xe0garbage")))


@pytest.mark.parametrize(
    ("fmt", "data", "reason"),
    [
        ("jpeg", b"", "empty compressed image"),
        ("jpeg", b"GIF89a....", "compressed data is not"),
        ("16UC1; compressedDepth png", b"\x89PNG\r\n\x1a\n....", "compressedDepth"),
    ],
)
def test_compressed_frames_checked_without_decoding(fmt: str, data: bytes, reason: str) -> None:
    with pytest.raises(codec.ImageCodecError, match=reason):
        check_compressed(CompressedImage(format=fmt, data=array.array("B", data)))
    check_compressed(CompressedImage(format="jpeg", data=array.array("B", b"\xff\xd8\xff\xe0 rest")))


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("encoding", "jpeg", "unsupported image encoding"),
        ("encoding", "16UC1", "depth"),
        ("step", 5, "step shorter"),
        ("height", 0, "empty image"),
        ("data", array.array("B", b"\x00" * 10), "truncated"),
    ],
)
def test_raw_frames_checked_without_decoding(field: str, value: object, reason: str) -> None:
    """check_image refuses what image_to_rgb8 would refuse, for the same reason, and passes good frames."""
    msg = codec.encode(sample("rgb8"), "rgb8", Image())
    check_image(msg, "never")
    setattr(msg, field, value)
    with pytest.raises(codec.ImageCodecError, match=reason):
        check_image(msg, "never")
    with pytest.raises(codec.ImageCodecError, match=reason):
        image_to_rgb8(msg, cv_bridge_policy="never")


def test_without_cv_bridge_other_encodings_are_refused_clearly() -> None:
    from converseg_ros.ros.msgs import cv_bridge_compat

    msg = codec.encode(sample("rgb8"), "rgb8", Image())
    msg.encoding = "bayer_rggb8"
    if cv_bridge_compat.get_bridge() is not None:
        pytest.skip("cv_bridge imports here: the refusal path is not taken")
    assert cv_bridge_compat.unavailable_reason()  # why it is not used (missing, or broken under NumPy 2)
    with pytest.raises(codec.ImageCodecError, match="cv_bridge unavailable"):
        image_to_rgb8(msg)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_cv_bridge_parity(encoding: str) -> None:
    from converseg_ros.ros.msgs import cv_bridge_compat

    if cv_bridge_compat.get_bridge() is None:
        pytest.skip(f"cv_bridge not importable here: {cv_bridge_compat.unavailable_reason()}")
    msg = raw_message(sample(encoding), encoding, False, 4)
    np.testing.assert_array_equal(image_to_rgb8(msg, "always"), image_to_rgb8(msg, "never"))
