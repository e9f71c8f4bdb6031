"""sjft-benchmark-descriptors: the extraction stage vs the per-image reference loop.

For each bank (Gabor; learned MobileNet v1 0.25 conv1 + conv_pw_1) and image size, in
one run, on the same images:
  ours:      sjft_tf extraction (TFRecord reader -> bank -> histogram layer, batched,
             XLA-compiled) writing descriptor shards; edges fitted first, not timed;
  reference: one image at a time: PIL decode, cv2.resize, then cv2.filter2D +
             np.histogram (Gabor), or the Keras bank on a batch of one + np.histogram.
Prints images per second (wall and CPU) and the ratios. Images: Flowers 102 train from
../shared when present, else the embedded demo textures. With --dtype_policies, our
extraction also runs with the bank in each mixed policy and prints its speed as a ratio
of float32's, in the same run (the histograms are counted in float32 either way).

With --histogram_methods, it also times each counting formulation of the histogram
layer (histogram.COUNTING_METHODS), alone and after the bank, on --histogram_banks at
--histogram_size (random images and weights; `descriptors.speed`), printing each as a
ratio of the lookup layer's rate and of the GPU anchor (41,500 images/s). Under
KERAS_BACKEND=jax the same section runs on JAX (--banks= skips the TFRecord part).
"""

import dataclasses
import os
import shutil
import tempfile
import time

from absl import flags
import numpy as np

from sjft_tf import bounds, errors
from sjft_tf.cli import config_flags, runner

@dataclasses.dataclass
class DescriptorBenchmarkConfig:
  """The benchmark's settings (each a flag of its name).

  Attributes:
    sizes: square image sizes to benchmark, pixels.
    banks: banks to benchmark (gabor, learned).
    num_images: images our extraction describes.
    num_reference_images: images the reference loop describes (a subset of the same).
    batch_size: our batch size.
    dtype_policies: bank precisions compared with float32 (precision.POLICIES);
      empty: none.
    work_dir: scratch folder ("": a temp dir).
    histogram_methods: counting formulations to time (lookup, compare, onehot);
      empty: none.
    histogram_banks: banks of that section (alexnet, lite0, mobilenet, gabor).
    histogram_size, histogram_batch, histogram_steps: its image side (px), batch and
      timed batches.
  """
  sizes: tuple[int, ...] = (64, 224)
  banks: tuple[str, ...] = ("gabor", "learned")
  num_images: int = bounds.field(512, lower=1)
  num_reference_images: int = bounds.field(64, lower=1)
  batch_size: int = bounds.field(64, lower=1)
  dtype_policies: tuple[str, ...] = ("mixed_bfloat16",)
  work_dir: str = ""
  histogram_methods: tuple[str, ...] = ()
  histogram_banks: tuple[str, ...] = ("alexnet", "lite0")
  histogram_size: int = bounds.field(224, lower=8)
  histogram_batch: int = bounds.field(32, lower=1)
  histogram_steps: int = bounds.field(3, lower=1)

  def __post_init__(self):
    bounds.check(self)


FLAG_VALUES = flags.FlagValues()
_CONFIG = config_flags.define(FLAG_VALUES, DescriptorBenchmarkConfig)
_MOBILENET = "weights/mobilenet_v1_0.25_imagenet/mobilenet_2_5_224_tf_no_top.h5"


def _image_files(work: str, count: int) -> tuple[list[str], str]:
  from sjft_tf.data import archives, synthetic
  shared = archives.shared_dir()
  if shared:
    cache = archives.extract(os.path.join(shared, "data/flowers102/flowers102_96px.tar.gz"),
                             archives.default_cache_dir())
    root, origin = os.path.join(cache, "flowers102", "train"), "Flowers 102 train (96 px)"
  else:
    root = os.path.join(work, "demo")
    synthetic.generate(root, synthetic.SyntheticConfig(source_images_per_class=30))
    root, origin = os.path.join(root, "source", "train"), "demo textures (64 px)"
  files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)
  return (files * (count // len(files) + 1))[:count], origin


def _timed(function) -> tuple[float, float]:
  wall, cpu = time.perf_counter(), time.process_time()
  function()
  return time.perf_counter() - wall, time.process_time() - cpu


def _histogram_methods(settings: DescriptorBenchmarkConfig) -> None:
  import keras
  from sjft_tf.descriptors import histogram, speed
  unknown = sorted(set(settings.histogram_methods) - set(histogram.COUNTING_METHODS))
  if unknown:
    raise errors.InputError(f"--histogram_methods: unknown {unknown}; known: "
                            f"{list(histogram.COUNTING_METHODS)}")
  print(f"histogram counting formulations, backend {keras.backend.backend()} on "
        f"{histogram.default_device_kind()} ({os.cpu_count()} CPU cores); 'auto' picks "
        f"{histogram.counting_method(histogram.default_device_kind())} here")
  for name in settings.histogram_banks:
    rates, info = speed.method_rates(speed.bank_by_name(name), settings.histogram_size,
                                     settings.histogram_batch, settings.histogram_steps,
                                     settings.histogram_methods)
    print("\n".join(speed.format_rates(name, rates, info)), flush=True)


def main(argv):
  # Over 60 lines: one measured sequence (ours against the references in one run), its
  # steps sharing the timers and the printed table.
  del argv
  settings = _CONFIG()
  if settings.histogram_methods:
    _histogram_methods(settings)
  if not settings.banks:
    return
  import cv2
  from sjft_tf.data import archives, ingest, sources
  from sjft_tf.data.images import decode_rgb
  from sjft_tf.descriptors import extract, reference

  work = settings.work_dir or tempfile.mkdtemp(prefix="sjft-bench-descriptors-")
  files, origin = _image_files(work, settings.num_images)
  # One folder of (repeated) images, ingested once: what our extraction reads.
  folder = os.path.join(work, "images", "all")
  os.makedirs(folder, exist_ok=True)
  for i, path in enumerate(files):
    link = os.path.join(folder, f"{i:05d}{os.path.splitext(path)[1]}")
    if not os.path.exists(link):
      os.symlink(path, link)
  spec = ingest.ingest(sources.list_folder(os.path.join(work, "images"), layout="class"),
                       ingest.IngestConfig(output_dir=os.path.join(work, "shards"),
                                           dataset_name="bench", shard_size=256,
                                           show_progress=False))
  shared = archives.shared_dir()
  weights = os.path.join(shared, _MOBILENET) if shared else None
  print(f"images: {origin}; ours {len(files)}, reference {settings.num_reference_images}; "
        f"{os.cpu_count()} CPU cores; learned bank weights: "
        f"{'ImageNet' if weights else 'random (no ../shared)'}")
  print(f"{'bank':8s} {'size':>5s} {'ours img/s':>11s} {'ref img/s':>10s} {'ratio':>6s}"
        f" {'ours img/CPU-s':>15s} {'ref img/CPU-s':>14s} {'CPU ratio':>9s}")
  for bank_kind in settings.banks:
    for size in settings.sizes:
      config = extract.ExtractionConfig(
          output_dir=os.path.join(work, f"out_{bank_kind}_{size}"),
          bank=extract.BankConfig(kind=bank_kind, weights=weights),
          resize_size=size, crop_size=size, batch_size=settings.batch_size,
          show_progress=False)
      bank = extract.make_bank(config.bank, config.dtype_policy)
      edges = extract.fit_edges(bank, spec, "train", config)
      compute = extract.compiled_descriptors(extract.descriptor_model(bank, edges, config))

      def ours():
        shutil.rmtree(config.output_dir, ignore_errors=True)
        extract.extract_split(compute, spec, "train", "source", config)

      ours()  # warm-up: tracing and XLA compilation
      ours_wall, ours_cpu = _timed(ours)

      def one_reference(path):
        with open(path, "rb") as f:
          image = cv2.resize(decode_rgb(f.read()), (size, size), interpolation=cv2.INTER_LINEAR)
        if bank_kind == "gabor":
          return reference.gabor_descriptor(image, edges.edges, edges.zero_floor)
        responses = [np.asarray(r, np.float64)[0] for r in bank(image[None].astype(np.float32))]
        return reference.histograms(responses, edges.edges, edges.zero_floor)

      subset = files[:settings.num_reference_images]
      one_reference(subset[0])  # warm-up
      ref_wall, ref_cpu = _timed(lambda: [one_reference(p) for p in subset])
      rates = (len(files) / ours_wall, len(subset) / ref_wall,
               len(files) / ours_cpu, len(subset) / ref_cpu)
      print(f"{bank_kind:8s} {size:5d} {rates[0]:11.1f} {rates[1]:10.1f} "
            f"{rates[0] / rates[1]:5.1f}x {rates[2]:15.1f} {rates[3]:14.1f} "
            f"{rates[2] / rates[3]:8.1f}x")
      for policy in settings.dtype_policies:
        mixed = dataclasses.replace(config, dtype_policy=policy,
                                    output_dir=config.output_dir + f"_{policy}")
        mixed_bank = extract.make_bank(mixed.bank, policy)
        mixed_compute = extract.compiled_descriptors(
            extract.descriptor_model(mixed_bank, edges, mixed))

        def ours_mixed():
          shutil.rmtree(mixed.output_dir, ignore_errors=True)
          extract.extract_split(mixed_compute, spec, "train", "source", mixed)

        ours_mixed()  # warm-up
        mixed_wall, _ = _timed(ours_mixed)
        print(f"{'':8s} {'':5s} bank in {policy}: {len(files) / mixed_wall:.1f} img/s, "
              f"{ours_wall / mixed_wall:.2f}x float32's speed")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
