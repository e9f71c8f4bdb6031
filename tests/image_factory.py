"""Writes test images of every kind ingestion must handle, with their expected RGB."""

import io
import os

import numpy as np
from PIL import Image


def random_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Smooth random colours (JPEG-friendly), uint8 [height, width, 3]."""
  coarse = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def save(path: str, image: Image.Image, **kwargs) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kwargs)
  return path


def png_rgb(path: str, pixels: np.ndarray) -> np.ndarray:
  save(path, Image.fromarray(pixels), format="PNG")
  return pixels


def png_rgba(path: str, pixels: np.ndarray) -> np.ndarray:
  """PNG with an alpha channel; expected RGB: the colour channels, alpha dropped."""
  alpha = np.full(pixels.shape[:2] + (1,), 128, np.uint8)
  save(path, Image.fromarray(np.concatenate([pixels, alpha], -1), mode="RGBA"), format="PNG")
  return pixels


def png_gray16(path: str, rng: np.random.Generator, shape=(20, 24)) -> np.ndarray:
  """16-bit grayscale PNG; expected RGB: the value >> 8, replicated."""
  values = rng.integers(0, 65536, size=shape, dtype=np.uint16)
  save(path, Image.fromarray(values), format="PNG")
  return np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1)


def jpeg_gray(path: str, pixels: np.ndarray) -> np.ndarray:
  """Grayscale JPEG; expected RGB: what PIL decodes, replicated."""
  gray = Image.fromarray(pixels).convert("L")
  save(path, gray, format="JPEG", quality=90)
  return np.repeat(np.asarray(Image.open(path))[..., None], 3, axis=-1)


def jpeg_cmyk(path: str, pixels: np.ndarray) -> np.ndarray:
  """CMYK JPEG; expected RGB: PIL's CMYK -> RGB conversion of the decoded file."""
  save(path, Image.fromarray(pixels).convert("CMYK"), format="JPEG", quality=95)
  return np.asarray(Image.open(path).convert("RGB"))


def jpeg_exif_rotated(path: str, pixels: np.ndarray) -> np.ndarray:
  """JPEG with EXIF orientation 6 (rotate 90 clockwise to display)."""
  exif = Image.Exif()
  exif[0x0112] = 6
  save(path, Image.fromarray(pixels), format="JPEG", quality=95, exif=exif.tobytes())
  return np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270))


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def truncated_jpeg(path: str, pixels: np.ndarray) -> None:
  data = jpeg_bytes(pixels)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])


def write_bytes(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
