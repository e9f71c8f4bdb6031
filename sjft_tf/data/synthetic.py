"""The embedded demo problem: procedural textures, no download needed.

A *source* with many classes, each a texture family at one setting (oriented gratings,
checkerboards, blobs, smoothed colour noise, rings, at several scales and orientations,
each with its own two-colour palette), and a few-shot *target* whose every class is
the texture of one source class (its "related" class: same family, setting and palette,
jittered) shown as an object: an ellipse of the texture, faded to low contrast outside. Target
classes therefore share low-level statistics with a known subset of the source classes,
which lets later stages measure whether selection finds them.

Output (image folders, then ingested like any user data):
  OUT/source/train/<class>/<index>.png
  OUT/target/{train,val,test}/<class>/<index>.png
  OUT/generator.json           the config and target class -> related source class
"""

import dataclasses
import json
import math
import os

import cv2
import numpy as np
from PIL import Image

from sjft_tf import bounds, errors
from sjft_tf import files

GENERATOR_FILENAME = "generator.json"


@dataclasses.dataclass
class SyntheticConfig:
  """Size and randomness of the demo problem.

  Attributes:
    seed: everything is a deterministic function of it.
    image_size: side of the square images, pixels.
    source_images_per_class: images of every source class.
    num_target_classes: target classes, each related to a distinct source class.
    target_split_sizes: images per target class in each split.
  """
  seed: int = 0
  image_size: int = dataclasses.field(default=64, metadata={"flag": {"lower_bound": 16}})
  source_images_per_class: int = dataclasses.field(default=80,
                                                   metadata={"flag": {"lower_bound": 1}})
  num_target_classes: int = dataclasses.field(default=6,
                                              metadata={"flag": {"lower_bound": 1}})
  target_split_sizes: dict[str, int] = dataclasses.field(
      default_factory=lambda: {"train": 10, "val": 10, "test": 30})


# (family, setting): settings are in pixels (wavelength, square side, blob radius,
# noise smoothing sigma) and degrees (grating orientation).

  def __post_init__(self):
    bounds.check(self)


SOURCE_TEXTURES = (
    [("grating", (angle, wavelength)) for wavelength in (4.0, 10.0)
     for angle in (0.0, 45.0, 90.0, 135.0)]
    + [("checker", (side,)) for side in (3.0, 6.0, 12.0)]
    + [("blobs", (radius,)) for radius in (2.0, 5.0, 10.0)]
    + [("noise", (sigma,)) for sigma in (0.7, 2.0, 5.0)]
    + [("rings", (wavelength,)) for wavelength in (5.0, 12.0)]
    + [("dots", (spacing,)) for spacing in (5.0, 11.0)]
)


def source_class_name(index: int) -> str:
  family, setting = SOURCE_TEXTURES[index]
  return f"{index:02d}_{family}_" + "_".join(f"{v:g}" for v in setting)


def _pattern(family: str, setting: tuple[float, ...], size: int,
             rng: np.random.Generator) -> np.ndarray:
  """One texture sample in [0, 1], float32 [size, size], with random phase/jitter."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  if family == "grating":
    angle = math.radians(setting[0] + rng.uniform(-6, 6))
    wavelength = setting[1] * rng.uniform(0.9, 1.1)
    phase = rng.uniform(0, 2 * math.pi)
    return 0.5 + 0.5 * np.sin(
        2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / wavelength + phase)
  if family == "checker":
    side = setting[0] * rng.uniform(0.9, 1.1)
    angle = math.radians(rng.uniform(-10, 10))
    u = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, side * 2)
    v = -xx * math.sin(angle) + yy * math.cos(angle) + rng.uniform(0, side * 2)
    return ((np.floor(u / side) + np.floor(v / side)) % 2).astype(np.float32)
  if family == "blobs":
    radius = setting[0] * rng.uniform(0.85, 1.15)
    field = np.zeros((size, size), np.float32)
    for _ in range(max(3, int(size * size / (radius * radius * 12)))):
      cy, cx = rng.uniform(0, size, 2)
      field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
    return np.clip(field, 0, 1)
  if family == "noise":
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32),
                             (0, 0), setting[0])
    return np.clip(0.5 + field / (6 * field.std() + 1e-6), 0, 1)
  if family == "rings":
    wavelength = setting[0] * rng.uniform(0.9, 1.1)
    cy, cx = rng.uniform(0, size, 2)
    radius = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return 0.5 + 0.5 * np.sin(2 * math.pi * radius / wavelength + rng.uniform(0, 6.3))
  if family == "dots":
    spacing = setting[0] * rng.uniform(0.9, 1.1)
    u, v = (xx + rng.uniform(0, spacing)) % spacing, (yy + rng.uniform(0, spacing)) % spacing
    distance = np.sqrt((u - spacing / 2) ** 2 + (v - spacing / 2) ** 2)
    return (distance < spacing * 0.3).astype(np.float32)
  raise errors.InputError(f"unknown texture family {family!r}")


def _palettes(rng: np.random.Generator, count: int) -> np.ndarray:
  """Two RGB colours per class, float32 [count, 2, 3] in [0, 255]."""
  return rng.uniform(20, 235, size=(count, 2, 3)).astype(np.float32)


def _colourise(pattern: np.ndarray, palette: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
  jittered = np.clip(palette + rng.uniform(-15, 15, size=palette.shape), 0, 255)
  return pattern[..., None] * jittered[1] + (1 - pattern[..., None]) * jittered[0]


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  noisy = image + rng.normal(0, 4, size=image.shape)
  return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def source_image(class_index: int, palette: np.ndarray, size: int,
                 rng: np.random.Generator) -> np.ndarray:
  """uint8 [size, size, 3]: a full-frame texture of source class `class_index`."""
  family, setting = SOURCE_TEXTURES[class_index]
  return _finish(_colourise(_pattern(family, setting, size, rng), palette, rng), rng)


FIELD_CONTRAST = 0.3


def target_image(related_index: int, palette: np.ndarray, size: int,
                 rng: np.random.Generator) -> np.ndarray:
  """uint8 [size, size, 3]: the related texture inside an ellipse, faded outside it.

  The ellipse covers about half to three quarters of the frame; outside it the same
  texture runs at FIELD_CONTRAST of its contrast around its mean colour. A plain field
  would add a spike of zero responses that no full-frame source texture has, which
  pulls colour-blind banks (Gabor) towards the smoothest source classes instead.
  """
  family, setting = SOURCE_TEXTURES[related_index]
  texture = _colourise(_pattern(family, setting, size, rng), palette, rng)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  cy, cx = rng.uniform(0.45, 0.55, 2) * size
  ry, rx = rng.uniform(0.38, 0.5, 2) * size
  inside = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)[..., None]
  mean_colour = palette.mean(0) + rng.uniform(-10, 10, 3)
  field = mean_colour + FIELD_CONTRAST * (texture - texture.mean(axis=(0, 1)))
  return _finish(np.where(inside, texture, field), rng)


def _save(image: np.ndarray, path: str) -> None:
  with files.atomic_path(path, ".png") as temporary:
    Image.fromarray(image).save(temporary)


def generate(output_dir: str, config: SyntheticConfig) -> dict:
  """Writes the demo problem under `output_dir`; returns the generator record.

  Existing images are kept (a rerun with the same config writes the same files), so
  an interrupted generation resumes.
  """
  rng = np.random.default_rng(config.seed)
  num_source = len(SOURCE_TEXTURES)
  if not 0 < config.num_target_classes <= num_source:
    raise errors.InputError(f"num_target_classes must be in 1..{num_source}")
  source_palettes = _palettes(rng, num_source)
  related = sorted(rng.choice(num_source, config.num_target_classes, replace=False).tolist())

  def write(path: str, make) -> None:
    # Each image has its own generator, seeded by its path inside output_dir: reruns
    # are identical whatever was already written, wherever the output goes.
    relative = os.path.relpath(path, output_dir).replace(os.sep, "/")
    image_rng = np.random.default_rng([config.seed, *relative.encode()])
    if not os.path.exists(path):
      _save(make(image_rng), path)

  for c in range(num_source):
    for i in range(config.source_images_per_class):
      path = os.path.join(output_dir, "source", "train", source_class_name(c), f"{i:04d}.png")
      write(path, lambda r, c=c: source_image(c, source_palettes[c], config.image_size, r))
  target_names = []
  for k, source_index in enumerate(related):
    name = f"target_{k:02d}"
    target_names.append(name)
    for split, count in config.target_split_sizes.items():
      for i in range(count):
        path = os.path.join(output_dir, "target", split, name, f"{i:04d}.png")
        write(path, lambda r, s=source_index: target_image(
            s, source_palettes[s], config.image_size, r))
  record = {
      "generator": "sjft_tf.data.synthetic",
      "config": dataclasses.asdict(config),
      "source_classes": [source_class_name(c) for c in range(num_source)],
      "related_source_classes": {name: [source_class_name(s)]
                                 for name, s in zip(target_names, related)},
  }
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, GENERATOR_FILENAME), "w") as f:
    json.dump(record, f, indent=1)
  return record
