r"""From scratch on a GPU: how the gain of selection grows with compute, at 10x and 30x
the from-scratch study's 3,000 batches, under Keras' JAX backend (a GPU host has JAX but
no TensorFlow), fed from numpy arrays.

  # 1. here (TensorFlow): the arrays, from the from-scratch preset's data and selections
  #    (selects, trains nothing; at most 60 MiB, under .cache/ which git ignores)
  python -m tools.gpu_study --prepare \
      --reproduce_flagfile=flags/reproduce/flowers102_scratch_resnet.flags \
      --arrays=.cache/gpu_study/flowers102_32px.npz
  # 2. on the GPU host, Keras carried as wheels (docs/gpu.md), about 8 minutes on an H100:
  KERAS_BACKEND=jax python3 -m tools.gpu_study \
      --arrays=.cache/gpu_study/flowers102_32px.npz --output=$OUT/gpu_study.json
  # any machine, seconds, tiny sizes (the test suite runs it):
  python -m tools.gpu_study --smoke

Rows, one seed: target_only (32 target images a batch), joint_random and
selective_classes (32 target + 96 source images a batch, each head's loss the mean over
its domain, weighted 0.5) at the budget of the study (6,740 source images: a random
subset, and the 15 whole Tiny ImageNet classes nearest Flowers by class means). The
recipe of the study: CIFAR ResNet-8 from random weights, 32 px, SGD momentum 0.9 lr 0.1
cosine over the run, decoupled weight decay 5e-4, 4-px reflect pad-and-crop + flip on
both domains (on the host, numpy). Source images are drawn with the selection's
weights (its pools' union); target images in shuffled passes. What differs from
sjft-train: the data path (numpy, not tf.data) and the sampler (the pools' union, not
each target's own pool: at these budgets the same images). Prints and writes, per row
and length: val and test top-1 (centre), seconds, images/s; and the device.
"""

import json
import os
import time

from absl import app, flags
import numpy as np

from tools import jax_host

# Its flags are defined when it runs as a script, so that the tests can import it
# beside tools that define flags of the same names (lever_table's --output).
_PREPARE = _REPRODUCE_FLAGFILE = _BUDGET = _ARRAYS = _OUTPUT = _MULTIPLIERS = _BASE_STEPS = _ROWS = _SEED = _STEPS_PER_EXECUTION = _SMOKE = None


def _define_flags() -> None:
  global _PREPARE, _REPRODUCE_FLAGFILE, _BUDGET, _ARRAYS, _OUTPUT, _MULTIPLIERS, _BASE_STEPS, _ROWS, _SEED, _STEPS_PER_EXECUTION, _SMOKE
  _PREPARE = flags.DEFINE_bool("prepare", False, "Write --arrays from --reproduce_flagfile's data and selections (needs TensorFlow), then stop.")
  _REPRODUCE_FLAGFILE = flags.DEFINE_string("reproduce_flagfile", "flags/reproduce/flowers102_scratch_resnet.flags", "The sjft-reproduce preset whose target, source, budget and selections the arrays hold.")
  _BUDGET = flags.DEFINE_integer("budget_images", 6740, "The partial-source rows' budget (source images).")
  _ARRAYS = flags.DEFINE_string("arrays", ".cache/gpu_study/flowers102_32px.npz", "The arrays (uint8 images, int labels).")
  _OUTPUT = flags.DEFINE_string("output", "", "JSON of the results (written as they come).")
  _MULTIPLIERS = flags.DEFINE_list("multipliers", ["10", "30"], "Run lengths as multiples of --base_steps.")
  _BASE_STEPS = flags.DEFINE_integer("base_steps", 3000, "The study's batches (x1).")
  _ROWS = flags.DEFINE_list("rows", ["target_only", "joint_random", "selective_classes"], "Rows to train.")
  _SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, sampling and augmentation.")
  _STEPS_PER_EXECUTION = flags.DEFINE_integer("steps_per_execution", 50, "Batches per compiled call (fewer host round trips).")
  _SMOKE = flags.DEFINE_bool("smoke", False, "Random tiny arrays, a few steps: checks the script runs.")

TARGET_PER_BATCH, SOURCES_PER_TARGET, IMAGE_SIZE, PADDING = 32, 3, 32, 4
SOURCE_ROWS = {"joint_random": "random", "selective_classes": "classes"}


def prepare(flagfile: str, budget: int, path: str) -> dict:
  """Writes the target's splits and the two source subsets at 32 px to `path`
  (np.savez_compressed; uint8 images [n, 32, 32, 3], int32 labels); returns the sizes."""
  from sjft_tf.cli import reproduce as reproduce_cli, runner  # pylint: disable=g-import-not-at-top
  from sjft_tf.data import pipeline, spec as spec_lib
  from sjft_tf.experiments import ablation
  from sjft_tf.selection import manifest
  runner.parse_stage(reproduce_cli, flagfile, "--rows=joint_random,selective_classes",
                     f"--budget_images={budget}", "--output_dir=runs/gpu_study")
  config = ablation.sized(reproduce_cli._CONFIG())  # pylint: disable=protected-access
  firsts = ablation.row_rounds(config, _SEED.value, rows=tuple(SOURCE_ROWS))
  reader = pipeline.ReaderConfig(batch_size=256, resize_size=IMAGE_SIZE, crop_size=IMAGE_SIZE)

  def images(spec_dir, split, keep=None):
    ids, pixels, labels = [], [], []
    for batch in pipeline.make_dataset(spec_lib.load_spec(spec_dir), split, reader,
                                       training=False):
      ids.append(batch["id"].numpy().astype(str))
      pixels.append(np.clip(np.round(batch["image"].numpy()), 0, 255).astype(np.uint8))
      labels.append(batch["label"].numpy().astype(np.int32))
    ids, pixels, labels = map(np.concatenate, (ids, pixels, labels))
    return (ids, pixels, labels) if keep is None else (ids, pixels[np.isin(ids, keep)],
                                                       labels[np.isin(ids, keep)])

  arrays, first = {}, manifest.load(firsts["selective_classes"])
  for split in ("train", "val", "test"):
    _, arrays[f"target_{split}_images"], arrays[f"target_{split}_labels"] = images(
        config.train.target_spec_dir, split)
  source = first.provenance.source
  all_ids, all_pixels, _ = images(source.spec_dir, source.split)
  where = {image_id: i for i, image_id in enumerate(all_ids)}
  for row, name in SOURCE_ROWS.items():
    selection = manifest.load(firsts[row])
    chosen = selection.source_ids[selection.selected]
    arrays[f"{name}_images"] = all_pixels[[where[i] for i in chosen]]
    arrays[f"{name}_labels"] = selection.head_labels.astype(np.int32)
    arrays[f"{name}_weights"] = selection.weights.astype(np.float64)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f"{path}.tmp.{os.getpid()}.npz"
  np.savez_compressed(temporary, **arrays)
  os.replace(temporary, path)
  return {k: list(v.shape) for k, v in arrays.items()} | {"bytes": os.path.getsize(path)}


def smoke_arrays(rng) -> dict:
  """Random tiny arrays of prepare's layout: 4 target classes, 6 source classes."""
  def images(n):
    return rng.integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
  arrays = {}
  for split, n in (("train", 16), ("val", 8), ("test", 8)):
    arrays[f"target_{split}_images"] = images(n)
    arrays[f"target_{split}_labels"] = (np.arange(n) % 4).astype(np.int32)
  for name in SOURCE_ROWS.values():
    arrays[f"{name}_images"] = images(24)
    arrays[f"{name}_labels"] = (np.arange(24) % 6).astype(np.int32)
    arrays[f"{name}_weights"] = np.full(24, 1 / 24)
  return arrays


def augment(images: np.ndarray, rng) -> np.ndarray:
  """4-px reflect pad, a random 32-px crop and a random horizontal flip per image:
  uint8 [n, 32, 32, 3] -> float32 [n, 32, 32, 3] in [0, 255]."""
  n = len(images)
  padded = np.pad(images, ((0, 0), (PADDING, PADDING), (PADDING, PADDING), (0, 0)), "reflect")
  rows, cols = rng.integers(0, 2 * PADDING + 1, n), rng.integers(0, 2 * PADDING + 1, n)
  grid = np.arange(IMAGE_SIZE)
  crops = padded[np.arange(n)[:, None, None], (rows[:, None] + grid)[:, :, None],
                 (cols[:, None] + grid)[:, None, :]]
  flip = rng.random(n) < 0.5
  crops[flip] = crops[flip, :, ::-1]
  return crops.astype(np.float32)


def batches(arrays: dict, row: str, rng):
  """Endless training batches of `row`: (images, {"target": labels, "source": labels}),
  -1 marking the other domain's images; target_only: {"target": labels} only."""
  targets, labels = arrays["target_train_images"], arrays["target_train_labels"]
  order = np.zeros(0, np.int64)
  name = SOURCE_ROWS.get(row)
  while True:
    while len(order) < TARGET_PER_BATCH:  # shuffled passes, one after another
      order = np.concatenate([order, rng.permutation(len(targets))])
    picked, order = order[:TARGET_PER_BATCH], order[TARGET_PER_BATCH:]
    if name is None:
      yield augment(targets[picked], rng), {"target": labels[picked]}
      continue
    drawn = rng.choice(len(arrays[f"{name}_images"]), TARGET_PER_BATCH * SOURCES_PER_TARGET,
                       p=arrays[f"{name}_weights"])
    none_t = np.full(len(drawn), -1, np.int32)
    none_s = np.full(len(picked), -1, np.int32)
    yield (augment(np.concatenate([targets[picked], arrays[f"{name}_images"][drawn]]), rng),
           {"target": np.concatenate([labels[picked], none_t]),
            "source": np.concatenate([none_s, arrays[f"{name}_labels"][drawn]])})


def top1(model, images: np.ndarray, labels: np.ndarray) -> float:
  """Target-head top-1 on uint8 images (no augmentation)."""
  import keras  # pylint: disable=g-import-not-at-top
  logits = [keras.ops.convert_to_numpy(model(images[i:i + 512].astype(np.float32),
                                             training=False)["target"])
            for i in range(0, len(images), 512)]
  return float(np.mean(np.concatenate(logits).argmax(1) == labels))


def train_row(arrays: dict, row: str, steps: int, steps_per_epoch: int) -> dict:
  """Trains one row for `steps` batches; returns its numbers."""
  import keras  # pylint: disable=g-import-not-at-top
  from sjft_tf.training import losses, model as model_lib, optimization
  keras.utils.set_random_seed(_SEED.value)
  name = SOURCE_ROWS.get(row)
  source_classes = int(arrays[f"{name}_labels"].max()) + 1 if name else 0
  model = model_lib.build_joint_model(
      model_lib.ModelConfig(base="CifarResNet8", weights="", input_size=IMAGE_SIZE, alpha=None),
      int(arrays["target_train_labels"].max()) + 1, source_classes)
  optimizer = optimization.make_optimizer(optimization.OptimizerConfig(
      learning_rate=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine"), steps)
  losses.compile_joint(model, optimizer, jit_compile=True,
                       steps_per_execution=min(_STEPS_PER_EXECUTION.value, steps_per_epoch))
  started = time.perf_counter()
  history = model.fit(batches(arrays, row, np.random.default_rng(_SEED.value)),
                      steps_per_epoch=steps_per_epoch, epochs=steps // steps_per_epoch,
                      verbose=2)
  seconds = time.perf_counter() - started
  images_per_batch = TARGET_PER_BATCH * (1 + (SOURCES_PER_TARGET if name else 0))
  return {"row": row, "steps": steps, "seconds": round(seconds, 1),
          "images_per_s": round(steps * images_per_batch / seconds, 1),
          "val_top1": top1(model, arrays["target_val_images"], arrays["target_val_labels"]),
          "test_top1": top1(model, arrays["target_test_images"], arrays["target_test_labels"]),
          "final_logs": {k: float(v[-1]) for k, v in history.history.items()}}


def main(argv):
  del argv
  if _PREPARE.value:
    print(json.dumps(prepare(_REPRODUCE_FLAGFILE.value, _BUDGET.value, _ARRAYS.value)))
    return
  if _SMOKE.value:
    arrays, lengths, per_epoch = smoke_arrays(np.random.default_rng(0)), [4], 2
  else:
    with np.load(_ARRAYS.value) as stored:
      arrays = dict(stored)
    lengths = [int(m) * _BASE_STEPS.value for m in _MULTIPLIERS.value]
    per_epoch = _BASE_STEPS.value
  report = {"device": jax_host.device(), "seed": _SEED.value, "runs": []}
  for steps in lengths:
    for row in _ROWS.value:
      report["runs"].append(train_row(arrays, row, steps, per_epoch))
      print(json.dumps(report["runs"][-1]), flush=True)
      if _OUTPUT.value:
        with open(f"{_OUTPUT.value}.tmp", "w") as f:
          json.dump(report, f, indent=1)
        os.replace(f"{_OUTPUT.value}.tmp", _OUTPUT.value)
  print(json.dumps({"device": report["device"], "runs": len(report["runs"])}))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
