"""The one image decoder of ingestion: any readable image file -> 8-bit RGB.

Ingestion normalises every input to RGB JPEG or PNG bytes that `tf.io.decode_image`
reads exactly, so the tf.data readers never meet CMYK, alpha, 16-bit or EXIF-rotated
images. Failures raise `ImageError` with a short reason that the ingest report lists.
"""

import dataclasses
import io
import re

import numpy as np
from PIL import ExifTags, Image, ImageOps

# Formats whose original bytes are kept when nothing has to change (no conversion,
# no resize): re-encoding a JPEG would lose quality for nothing.
_PASSTHROUGH_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
# Sources without compression loss are re-encoded without loss.
_LOSSLESS_FORMATS = {"PNG", "BMP", "TIFF", "GIF", "PPM", "TGA"}
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
# EXIF orientations 2-8 mirror or rotate the stored pixels; 1 (and junk) leave them.
_ROTATING_ORIENTATIONS = {2, 3, 4, 5, 6, 7, 8}


class ImageError(ValueError):
  """An input file that is not a usable image; `reason` is a short description."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


@dataclasses.dataclass
class NormalizedImage:
  """An image ready for a TFRecord.

  Attributes:
    encoded: JPEG or PNG bytes of an 8-bit RGB (or grayscale JPEG/PNG) image.
    format: "jpeg" or "png".
    height: pixels.
    width: pixels.
    converted_from: the source's PIL mode or format when it was converted, else None.
  """
  encoded: bytes
  format: str
  height: int
  width: int
  converted_from: str | None


def _open(data: bytes) -> Image.Image:
  if not data:
    raise ImageError("empty file (0 bytes)")
  try:
    image = Image.open(io.BytesIO(data))
    image.load()
  except Image.DecompressionBombError as e:
    raise ImageError(f"too large to decode safely ({e})") from e
  except (OSError, SyntaxError, ValueError) as e:
    # PIL raises UnidentifiedImageError (an OSError) for non-images and OSError for
    # truncated files; both are input problems, not bugs.
    # Without the object's address (<_io.BytesIO object at 0x7f...>): reports must be
    # identical from run to run.
    raise ImageError(f"not a readable image ({re.sub(r' at 0x[0-9a-fA-F]+', '', str(e))})") from e
  return image


def _to_rgb(image: Image.Image) -> Image.Image:
  """Converts any PIL mode to 8-bit RGB; alpha is dropped, 16-bit is scaled down."""
  if image.mode == "RGB":
    return image
  if image.mode in _HIGH_BIT_DEPTH_MODES:
    values = np.asarray(image, dtype=np.int64)
    gray = np.clip(values >> 8, 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")
  if image.mode == "F":
    gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")
  return image.convert("RGB")


def decode_rgb(data: bytes) -> np.ndarray:
  """Decodes image bytes to RGB pixels, applying the EXIF orientation.

  Returns:
    uint8 array [height, width, 3].
  Raises:
    ImageError: empty, truncated or non-image data.
  """
  image = _open(data)
  image = ImageOps.exif_transpose(image)
  return np.asarray(_to_rgb(image))


def _resized(image: Image.Image, max_side: int | None) -> Image.Image:
  if not max_side or max(image.size) <= max_side:
    return image
  scale = max_side / max(image.size)
  size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
  return image.resize(size, Image.BICUBIC, reducing_gap=None)


def normalize_image(data: bytes, max_side: int | None = None,
                    jpeg_quality: int = 95) -> NormalizedImage:
  """Turns any readable image into JPEG/PNG bytes that tf.io.decode_image reads as RGB.

  Original bytes are kept when the file is already an 8-bit RGB or grayscale JPEG or
  PNG, has no EXIF rotation and fits `max_side`. Otherwise the image is converted to
  RGB, resized so its longer side is `max_side` (bicubic, aspect kept) and re-encoded:
  PNG when the source was lossless and not resized, JPEG at `jpeg_quality` (4:4:4) otherwise.

  Args:
    data: the file's bytes.
    max_side: longest side in pixels after ingestion; None keeps the size.
    jpeg_quality: JPEG quality (1-95) for re-encoded images.
  Raises:
    ImageError: empty, truncated or non-image data.
  """
  image = _open(data)
  source_format = image.format or "unknown"
  width, height = image.size
  rotated = image.getexif().get(ExifTags.Base.Orientation, 1) in _ROTATING_ORIENTATIONS
  needs_resize = bool(max_side) and max(width, height) > max_side
  if (source_format in _PASSTHROUGH_FORMATS and image.mode in ("RGB", "L")
      and not rotated and not needs_resize):
    return NormalizedImage(data, _PASSTHROUGH_FORMATS[source_format], height, width, None)

  rgb = _resized(_to_rgb(ImageOps.exif_transpose(image)), max_side)
  lossless = source_format in _LOSSLESS_FORMATS and not needs_resize
  buffer = io.BytesIO()
  if lossless:
    rgb.save(buffer, format="PNG")
  else:
    # Full chroma resolution: colour statistics feed the descriptors.
    rgb.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0)
  if image.mode not in ("RGB", "L"):
    converted_from = image.mode
  elif rotated:
    converted_from = "EXIF orientation"
  else:
    converted_from = source_format
  return NormalizedImage(buffer.getvalue(), "png" if lossless else "jpeg",
                         rgb.size[1], rgb.size[0], converted_from)
