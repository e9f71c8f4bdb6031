"""sjft-benchmark-reader: images/s of our TFRecord reader vs Keras' folder reader.

Both read the same images, one epoch each, in one run, batch by batch:
  ours:  sjft_tf.data.pipeline.make_dataset (TFRecord shards, resize + centre crop)
  keras: keras.utils.image_dataset_from_directory (one file per image, resize)
The images are the Flowers 102 train+val folders of ../shared (--images=flowers102) or
synthetic JPEG photos of --image_height x --image_width (--images=synthetic).
"""

import dataclasses
import os
import tempfile
import time

from absl import flags
import numpy as np

from sjft_tf import bounds, errors
from sjft_tf.cli import config_flags, runner


@dataclasses.dataclass
class ReaderBenchmarkConfig:
  """The benchmark's settings (each a flag of its name).

  Attributes:
    images: which images to read (synthetic photos, or Flowers 102 of ../shared).
    num_images: synthetic images to write.
    image_height, image_width: the synthetic images' size, pixels.
    batch_size: images per batch.
    resize_size: our resize before the centre crop, pixels.
    crop_size: output side, pixels (Keras resizes straight to it).
    repeats: epochs timed per reader, alternating readers.
    max_side: our ingest shrinks images to this longer side (0: keep), as users do once
      for a source.
    work_dir: where to write images and shards ("": a temp dir).
  """
  images: str = dataclasses.field(default="synthetic", metadata={
      "flag": {"enum_values": ["synthetic", "flowers102"]}})
  num_images: int = bounds.field(2000, lower=1)
  image_height: int = bounds.field(375, lower=1)
  image_width: int = bounds.field(500, lower=1)
  batch_size: int = bounds.field(32, lower=1)
  resize_size: int = bounds.field(256, lower=1)
  crop_size: int = bounds.field(224, lower=1)
  repeats: int = bounds.field(5, lower=1)
  max_side: int = bounds.field(0, lower=0)
  work_dir: str = ""

  def __post_init__(self):
    bounds.check(self)


FLAG_VALUES = flags.FlagValues()
_CONFIG = config_flags.define(FLAG_VALUES, ReaderBenchmarkConfig)


def _synthetic_folder(root: str, count: int, height: int, width: int) -> str:
  from PIL import Image
  rng = np.random.default_rng(0)
  for i in range(count):
    folder = os.path.join(root, f"class_{i % 10}")
    os.makedirs(folder, exist_ok=True)
    coarse = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)
  return root


def _flowers_folder(root: str) -> str:
  from sjft_tf.data import archives
  shared = archives.shared_dir()
  if shared is None:
    raise errors.InputError("--images=flowers102 needs ../shared (or $SJFT_SHARED_DIR)")
  cache = archives.extract(os.path.join(shared, "data/flowers102/flowers102_96px.tar.gz"),
                           archives.default_cache_dir())
  # Keras wants ROOT/<class>/*: link train and val images into one folder per class.
  for split in ("train", "val"):
    split_dir = os.path.join(cache, "flowers102", split)
    for class_name in os.listdir(split_dir):
      os.makedirs(os.path.join(root, class_name), exist_ok=True)
      for name in os.listdir(os.path.join(split_dir, class_name)):
        link = os.path.join(root, class_name, f"{split}_{name}")
        if not os.path.exists(link):
          os.symlink(os.path.join(split_dir, class_name, name), link)
  return root


def _epoch(dataset) -> tuple[float, float, int]:
  """One pass over `dataset`: (images per wall second, per CPU second, images)."""
  wall, cpu, count = time.perf_counter(), time.process_time(), 0
  for batch in dataset:
    images = batch["image"] if isinstance(batch, dict) else batch[0]
    count += int(images.shape[0])
  return (count / (time.perf_counter() - wall), count / (time.process_time() - cpu), count)


def main(argv):
  del argv
  import keras
  from sjft_tf.data import ingest, pipeline, sources

  settings = _CONFIG()
  work = settings.work_dir or tempfile.mkdtemp(prefix="sjft-bench-reader-")
  folder = os.path.join(work, "images")
  if settings.images == "synthetic":
    if not os.path.isdir(folder):
      _synthetic_folder(folder, settings.num_images, settings.image_height, settings.image_width)
  else:
    _flowers_folder(folder)
  spec = ingest.ingest(sources.list_folder(folder, layout="class"), ingest.IngestConfig(
      output_dir=os.path.join(work, f"shards_max{settings.max_side}"), dataset_name="bench",
      shard_size=256, max_side=settings.max_side or None, show_progress=False))

  ours = pipeline.make_dataset(spec, "train", pipeline.ReaderConfig(
      batch_size=settings.batch_size, resize_size=settings.resize_size,
      crop_size=settings.crop_size), training=False)
  theirs = keras.utils.image_dataset_from_directory(
      folder, batch_size=settings.batch_size, image_size=(settings.crop_size,) * 2,
      shuffle=False, verbose=False)
  _epoch(ours), _epoch(theirs)  # warm-up: graph tracing, file cache
  # Shared 2-core VMs change speed from one second to the next: the readers alternate
  # epoch by epoch, ratios are medians of the paired epochs' ratios, and CPU time
  # (which excludes time the VM was not running us) gives the steadier figure.
  ours_runs, theirs_runs = [], []
  for _ in range(settings.repeats):
    ours_runs.append(_epoch(ours))
    theirs_runs.append(_epoch(theirs))
  print(f"images: {settings.images}, {ours_runs[0][2]} read by ours (ingested with max_side="
        f"{settings.max_side or 'original'}), {theirs_runs[0][2]} by Keras; {os.cpu_count()} "
        f"CPU cores; output {settings.crop_size}x{settings.crop_size}; {settings.repeats} paired "
        f"epochs; medians")
  print(f"{'':37s} {'images/s':>10s} {'images/CPU-s':>13s}")
  for name, runs in (("ours  (TFRecord reader)", ours_runs),
                     ("keras (image_dataset_from_directory)", theirs_runs)):
    print(f"{name:37s} {np.median([r[0] for r in runs]):10.1f} "
          f"{np.median([r[1] for r in runs]):13.1f}")
  wall_ratios = [a[0] / b[0] for a, b in zip(ours_runs, theirs_runs)]
  cpu_ratios = [a[1] / b[1] for a, b in zip(ours_runs, theirs_runs)]
  print(f"{'ratio ours/keras':37s} {np.median(wall_ratios):9.2f}x {np.median(cpu_ratios):12.2f}x"
        f"   (wall range {min(wall_ratios):.2f}-{max(wall_ratios):.2f})")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
