"""sjft-benchmark-reader: images/s of our TFRecord reader vs Keras' folder reader.

Both read the same images, one epoch each, in one run, batch by batch:
  ours:  sjft_tf.data.pipeline.make_dataset (TFRecord shards, resize + centre crop)
  keras: keras.utils.image_dataset_from_directory (one file per image, resize)
The images are the Flowers 102 train+val folders of ../shared (--images=flowers102) or
synthetic JPEG photos of --image_height x --image_width (--images=synthetic).
"""

import os
import tempfile
import time

from absl import app, flags
import numpy as np

_IMAGES = flags.DEFINE_enum("images", "synthetic", ["synthetic", "flowers102"], "Which images to read.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 2000, "Synthetic images to write.")
_IMAGE_HEIGHT = flags.DEFINE_integer("image_height", 375, "Synthetic image height, pixels.")
_IMAGE_WIDTH = flags.DEFINE_integer("image_width", 500, "Synthetic image width, pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.")
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 256, "Our resize before the centre crop.")
_CROP_SIZE = flags.DEFINE_integer("crop_size", 224, "Output side; Keras resizes straight to it.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Epochs timed per reader, alternating readers.")
_MAX_SIDE = flags.DEFINE_integer("max_side", 0, "Our ingest shrinks images to this longer side (0: keep), as users do once for a source.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where to write images and shards (default: a temp dir).")


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
    raise app.UsageError("--images=flowers102 needs ../shared (or $SJFT_SHARED_DIR)")
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

  work = _WORK_DIR.value or tempfile.mkdtemp(prefix="sjft-bench-reader-")
  folder = os.path.join(work, "images")
  if _IMAGES.value == "synthetic":
    if not os.path.isdir(folder):
      _synthetic_folder(folder, _NUM_IMAGES.value, _IMAGE_HEIGHT.value, _IMAGE_WIDTH.value)
  else:
    _flowers_folder(folder)
  spec = ingest.ingest(sources.list_folder(folder, layout="class"), ingest.IngestConfig(
      output_dir=os.path.join(work, f"shards_max{_MAX_SIDE.value}"), dataset_name="bench",
      shard_size=256, max_side=_MAX_SIDE.value or None, show_progress=False))

  ours = pipeline.make_dataset(spec, "train", pipeline.ReaderConfig(
      batch_size=_BATCH_SIZE.value, resize_size=_RESIZE_SIZE.value,
      crop_size=_CROP_SIZE.value), training=False)
  theirs = keras.utils.image_dataset_from_directory(
      folder, batch_size=_BATCH_SIZE.value, image_size=(_CROP_SIZE.value,) * 2,
      shuffle=False, verbose=False)
  _epoch(ours), _epoch(theirs)  # warm-up: graph tracing, file cache
  # Shared 2-core VMs change speed from one second to the next: the readers alternate
  # epoch by epoch, ratios are medians of the paired epochs' ratios, and CPU time
  # (which excludes time the VM was not running us) gives the steadier figure.
  ours_runs, theirs_runs = [], []
  for _ in range(_REPEATS.value):
    ours_runs.append(_epoch(ours))
    theirs_runs.append(_epoch(theirs))
  print(f"images: {_IMAGES.value}, {ours_runs[0][2]} read by ours (ingested with max_side="
        f"{_MAX_SIDE.value or 'original'}), {theirs_runs[0][2]} by Keras; {os.cpu_count()} "
        f"CPU cores; output {_CROP_SIZE.value}x{_CROP_SIZE.value}; {_REPEATS.value} paired "
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
  app.run(main)


if __name__ == "__main__":
  run()
