"""Normalisation of every input kind to RGB JPEG/PNG that tf.io reads back exactly."""

import numpy as np
import pytest
import tensorflow as tf

import image_factory
from sjft_tf.data.images import ImageError, decode_rgb, normalize_image
from sjft_tf.data.pipeline import decode_image


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _tf_decoded(normalized):
  return decode_image(tf.constant(normalized.encoded), tf.constant(normalized.format)).numpy()


@pytest.fixture
def pixels():
  return image_factory.random_rgb(np.random.default_rng(0), 30, 40)


# Lossless or untouched inputs come back exactly; converted JPEGs are re-encoded as
# JPEG at quality 95, which moves a pixel by about 1 level on average.
@pytest.mark.parametrize("kind,expect_converted,max_mean_error", [
    ("png_rgb", None, 0.0), ("png_rgba", "RGBA", 0.0), ("jpeg_gray", None, 0.0),
    ("jpeg_cmyk", "CMYK", 1.5), ("jpeg_exif_rotated", "EXIF orientation", 1.5)])
def test_conversions_decode_to_expected_rgb(tmp_path, pixels, kind, expect_converted,
                                            max_mean_error):
  path = str(tmp_path / f"{kind}.img")
  expected = getattr(image_factory, kind)(path, pixels)
  normalized = normalize_image(_read(path))
  assert normalized.converted_from == expect_converted
  np.testing.assert_array_equal(decode_rgb(_read(path)), expected)
  stored = _tf_decoded(normalized)
  assert stored.shape == expected.shape
  assert np.abs(stored.astype(int) - expected).mean() <= max_mean_error
  assert (normalized.height, normalized.width) == expected.shape[:2]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
  path = str(tmp_path / "gray16.png")
  expected = image_factory.png_gray16(path, np.random.default_rng(1))
  normalized = normalize_image(_read(path))
  assert normalized.format == "png" and normalized.converted_from is not None
  np.testing.assert_array_equal(_tf_decoded(normalized), expected)


def test_plain_jpeg_keeps_original_bytes(pixels):
  data = image_factory.jpeg_bytes(pixels)
  normalized = normalize_image(data)
  assert normalized.encoded == data and normalized.format == "jpeg"


def test_max_side_shrinks_keeping_aspect(pixels):
  normalized = normalize_image(image_factory.jpeg_bytes(pixels), max_side=20)
  assert (normalized.height, normalized.width) == (15, 20)
  assert _tf_decoded(normalized).shape == (15, 20, 3)


@pytest.mark.parametrize("make,reason", [
    (lambda p: b"", "empty file"),
    (lambda p: image_factory.jpeg_bytes(p)[:300], "not a readable image"),
    (lambda p: b"label,path\nnot,an image\n", "not a readable image"),
])
def test_bad_bytes_raise_image_error_with_reason(pixels, make, reason):
  with pytest.raises(ImageError, match=reason):
    normalize_image(make(pixels))
