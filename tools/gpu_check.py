r"""The prepared GPU check: speed of training, descriptors and the divergence under
Keras' JAX backend (a GPU host has JAX but no TensorFlow: ../shared/DEVICE.md), each
figure printed beside the anchor of DEVICE.md (one H100) as a ratio.

On the GPU host, with Keras carried as wheels (README: "On a GPU"):
  KERAS_BACKEND=jax python3 -m tools.gpu_check --output=$OUT/gpu_check.json
On any machine, in seconds, tiny sizes (the test suite runs this):
  KERAS_BACKEND=jax python3 -m tools.gpu_check --smoke

Sections (random weights and data: speed does not depend on them):
  training     joint (two heads, paired batch) and plain (target head) training steps
               of ResNet50V2 at 224 px, batch 128, float32 and mixed_bfloat16, compiled
               (jit) or eager; EfficientNetLite0 joint bf16 as well
  descriptors  the learned filter bank + 100-bin histograms at 224 px, each counting
               formulation of the histogram layer (lookup, compare, onehot) alone and
               after the bank: the AlexNet-shaped bank of the paper (352 channels,
               35,200 values) in float32 and bf16, and EfficientNetLite0's first layers
  divergence   the exact weighted symmetric KL (`divergence.divergence_matrix`, two
               matrix products) at 35,200 dimensions, in float32, bfloat16 and float16
A section past --time_budget_s is skipped and says so; results are written as they come.
"""

import json
import os
import time

from absl import app, flags
import numpy as np

from tools import jax_host

_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny sizes, a few steps: checks the script runs.")
_OUTPUT = flags.DEFINE_string("output", "", "JSON file of the figures (written as they come).")
_TIME_BUDGET = flags.DEFINE_float("time_budget_s", 420, "Skip what would start after this many seconds.")
_SECTIONS = flags.DEFINE_list("sections", ["training", "descriptors", "divergence"], "Which sections.")

# ../shared/DEVICE.md, one H100.
ANCHORS = {"joint_resnet50_bf16_images_per_s": 3800.0,
           "alexnet_bank_descriptors_images_per_s": 41500.0,
           "divergence_fp16_pairs_per_s": 6.2e8}


def _sync(value):
  import keras
  return keras.ops.convert_to_numpy(keras.tree.flatten(value)[0])


class Report:
  """Figures printed as they come and kept for the JSON file."""

  def __init__(self, path: str):
    self.path, self.rows, self.started = path, [], time.perf_counter()

  def elapsed(self) -> float:
    return time.perf_counter() - self.started

  def add(self, name: str, value: float, unit: str, anchor: str | None = None, **details):
    row = {"name": name, "value": round(value, 1), "unit": unit, **details}
    text = f"{name}: {value:,.1f} {unit}"
    if anchor and not _SMOKE.value:
      row["anchor"], row["ratio_to_anchor"] = ANCHORS[anchor], value / ANCHORS[anchor]
      text += f"  ({value / ANCHORS[anchor]:.2f}x the H100 anchor {ANCHORS[anchor]:,.0f})"
    print(text, flush=True)
    self.rows.append(row)
    self.write()

  def skip(self, name: str):
    print(f"{name}: skipped (past --time_budget_s={_TIME_BUDGET.value:.0f})", flush=True)
    self.rows.append({"name": name, "skipped": True})
    self.write()

  def measure(self, name: str, timed, unit: str, anchor: str | None = None, **details):
    """Adds `timed()` (a figure, or (figure, details)), or skips it past the budget."""
    if self.elapsed() > _TIME_BUDGET.value:
      self.skip(name)
      return
    value = timed()
    if isinstance(value, tuple):
      value, more = value
      details = {**details, **more}
    self.add(name, value, unit, anchor, **details)

  def write(self):
    if self.path:
      with open(self.path, "w") as f:
        json.dump({"device": jax_host.device(), "smoke": _SMOKE.value, "rows": self.rows}, f, indent=1)


def _train_rate(base: str, size: int, batch: int, policy: str, jit: bool, joint: bool,
                steps: int, alpha=None) -> float:
  """Images/s of `steps` train_on_batch calls after two warm-up (compiling) calls."""
  import keras
  from sjft_tf.training import losses, model as model_lib
  keras.utils.set_random_seed(0)
  config = model_lib.ModelConfig(base=base, weights="", input_size=size, alpha=alpha,
                                 dtype_policy=policy)
  model = model_lib.build_joint_model(config, 102, 200 if joint else 0)
  losses.compile_joint(model, keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit)
  rng = np.random.default_rng(0)
  images = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch, size, size, 3)).astype(
      np.float32))
  rows = np.arange(batch)
  labels = {"target": np.where(rows % 2 == 0 if joint else True,
                               rng.integers(0, 102, batch), -1)}
  if joint:
    labels["source"] = np.where(rows % 2 == 1, rng.integers(0, 200, batch), -1)
  labels = {k: keras.ops.convert_to_tensor(v) for k, v in labels.items()}
  for _ in range(2):
    model.train_on_batch(images, labels)
  started = time.perf_counter()
  for _ in range(steps):
    logs = model.train_on_batch(images, labels, return_dict=True)
  seconds = time.perf_counter() - started
  if not np.isfinite(float(logs["loss"])):
    raise RuntimeError(f"{base} {policy}: loss {logs['loss']}")
  return batch * steps / seconds


def training(report: Report):
  smoke = _SMOKE.value
  base, size, batch = ("MobileNet", 32, 8) if smoke else ("ResNet50V2", 224, 128)
  alpha = 0.25 if smoke else None
  variants = [(True, "mixed_bfloat16", True), (True, "float32", True),
              (False, "mixed_bfloat16", True), (False, "float32", True),
              (True, "mixed_bfloat16", False)]
  if smoke:  # each code path once: joint compiled in bf16, plain eager in float32
    variants = [(True, "mixed_bfloat16", True), (False, "float32", False)]
  for joint, policy, jit in variants:
    steps = 2 if smoke else (20 if jit else 3)
    anchor = ("joint_resnet50_bf16_images_per_s" if (joint and jit and
                                                      policy == "mixed_bfloat16") else None)
    report.measure(f"train {'joint' if joint else 'plain'} {base} {size}px batch {batch} "
                   f"{policy} {'jit' if jit else 'eager'}",
                   lambda: _train_rate(base, size, batch, policy, jit, joint, steps, alpha),
                   "images/s", anchor, joint=joint, policy=policy, jit=jit)
  if not smoke:
    report.measure(f"train joint EfficientNetLite0 {size}px batch {batch} mixed_bfloat16 jit",
                   lambda: _train_rate("EfficientNetLite0", size, batch, "mixed_bfloat16",
                                       True, True, 20), "images/s")


def _method_rates(bank_name: str, size: int, batch: int, steps: int, policy: str):
  """{method: (histogram images/s, bank + histograms images/s)} and the details."""
  from sjft_tf.descriptors import speed
  bank = speed.alexnet_bank(policy) if bank_name == "alexnet" else speed.bank_by_name(bank_name)
  rates, info = speed.method_rates(bank, size, batch, steps)
  print("\n".join(speed.format_rates(f"{bank_name} {policy}", rates, info)), flush=True)
  return rates, info


def descriptors(report: Report):
  """Every counting formulation of the histogram layer (histogram.COUNTING_METHODS),
  alone and after the bank; the anchor is read against the bank + histograms figure
  of the method 'auto' picks on this device."""
  from sjft_tf.descriptors import histogram
  smoke = _SMOKE.value
  size, batch, steps = (64, 4, 2) if smoke else (224, 256, 20)
  picked = histogram.counting_method(histogram.default_device_kind())
  runs = [("alexnet", "mixed_bfloat16")] if smoke else [
      ("alexnet", "float32"), ("alexnet", "mixed_bfloat16"), ("lite0", "float32")]
  for bank_name, policy in runs:
    if report.elapsed() > _TIME_BUDGET.value:
      report.skip(f"descriptors {bank_name} {policy}")
      continue
    rates, info = _method_rates(bank_name, size, batch, steps, policy)
    for rate in rates:
      anchor = ("alexnet_bank_descriptors_images_per_s"
                if bank_name == "alexnet" and rate.method == picked else None)
      report.add(f"descriptors {bank_name} bank + histograms ({rate.method}) {size}px "
                 f"batch {batch} {policy}", rate.descriptor_images_per_s, "images/s",
                 anchor, policy=policy, method=rate.method, values=info["values"],
                 counts_agree=info["agree"])
      report.add(f"histograms alone {bank_name} ({rate.method}) {size}px batch {batch}",
                 rate.histogram_images_per_s, "images/s", method=rate.method)


def _block(value):
  """Waits for a device array (JAX dispatches asynchronously)."""
  return np.asarray(value.block_until_ready() if hasattr(value, "block_until_ready")
                    else value)


def divergence(report: Report):
  import keras
  from keras import ops
  from sjft_tf.selection import divergence as divergence_lib
  smoke = _SMOKE.value
  targets, sources, dimension = (8, 16, 100) if smoke else (1024, 16384, 35200)
  rng = np.random.default_rng(0)
  weights = np.full(dimension, 1.0 / 352, np.float32)

  def histograms(n):
    x = rng.random((n, dimension), dtype=np.float32)
    return x / x.sum(1, keepdims=True) * (dimension / 100)  # 100-bin channels sum to 1
  t = divergence_lib.prepare(histograms(targets), weights)
  s = divergence_lib.prepare(histograms(sources), weights)
  reference = divergence_lib.divergence_matrix(t, s)
  def on_device(p, dtype):
    """The terms as device arrays of `dtype` (JAX's support `@` and `.T`, as NumPy's);
    elsewhere NumPy arrays of it (ml_dtypes' bfloat16)."""
    if keras.backend.backend() != "jax":
      import ml_dtypes  # pylint: disable=g-import-not-at-top
      cast = {"bfloat16": ml_dtypes.bfloat16}.get(dtype, dtype)
      convert = lambda a, matrix: a.astype(cast if matrix else np.float32)
    else:
      convert = lambda a, matrix: ops.convert_to_tensor(a, dtype if matrix else "float32")
    return divergence_lib.Prepared(*(None if a is None else convert(a, a.ndim > 1) for a in (
        p.weighted, p.weighted_logs, p.values, p.logs, p.self_terms)))

  def timed(dtype):
    dt, ds = on_device(t, dtype), on_device(s, dtype)
    matrix = np.asarray(keras.ops.convert_to_numpy(divergence_lib.divergence_matrix(dt, ds)),
                        np.float32)
    error = float(np.max(np.abs(matrix - reference)) / np.max(np.abs(reference)))
    steps = 2 if smoke else 10
    started = time.perf_counter()
    for _ in range(steps):
      out = divergence_lib.divergence_matrix(dt, ds)
    _block(out)
    return (targets * sources * steps / (time.perf_counter() - started),
            {"max_relative_error": error})

  for dtype in ("float32", "bfloat16", "float16"):
    report.measure(f"divergence {targets} x {sources} at {dimension} dims, {dtype} products",
                   lambda: timed(dtype), "pairs/s",
                   "divergence_fp16_pairs_per_s" if dtype == "float16" else None)


def main(argv):
  del argv
  import keras
  report = Report(_OUTPUT.value)
  print(f"backend {keras.backend.backend()} on {jax_host.device()}"
        f"{' (smoke: tiny sizes)' if _SMOKE.value else ''}", flush=True)
  sections = {"training": training, "descriptors": descriptors, "divergence": divergence}
  for name in _SECTIONS.value:
    sections[name](report)
  print(f"done in {report.elapsed():.0f} s", flush=True)


if __name__ == "__main__":
  if "KERAS_BACKEND" not in os.environ:
    os.environ["KERAS_BACKEND"] = "jax"
  app.run(main)
