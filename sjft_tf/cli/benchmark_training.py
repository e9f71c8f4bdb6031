"""sjft-benchmark-training: images/s of joint fine-tuning vs plain fine-tuning, one run.

Both fit the same base for the same number of batches of the same size:
  joint: PairSampler (paired target + source images from a selection round), two heads,
         the per-domain loss, the SelectiveRounds callback;
  plain: the data layer's training reader over the target split, the target head alone,
         `model.fit` as a user would write it.
The two alternate call by call after a warm-up call each (which also compiles). This
VM's speed steps by up to 2x within seconds, so each variant's best call is reported
(the speed both reach when the machine is fast) with the median of the ratios of
adjacent calls. plain / joint - 1 is the overhead of the joint machinery (goal: at
most 10%). The joint step is also timed under each of --dtype_policies and with an
XLA-compiled step (--jit_compile), each printed as a ratio of the float32 joint step's
speed in the same run.
"""

import dataclasses
import os
import tempfile
import time

import numpy as np
from absl import app, flags

_FIRST_ROUND = flags.DEFINE_string("first_round", "runs/demo/selection/round_000", "Selection round (make demo writes this one).")
_BASE = flags.DEFINE_string("base", "MobileNet", "keras.applications base.")
_ALPHA = flags.DEFINE_float("alpha", 0.25, "MobileNet width multiplier (ignored by other bases).")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 64, "Input side in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch (joint: both domains).")
_STEPS = flags.DEFINE_integer("steps", 40, "Batches per timed call.")
_POLICIES = flags.DEFINE_list("dtype_policies", ["mixed_bfloat16"], "Precisions of the joint step compared with float32 (precision.POLICIES); empty: none.")
_JIT = flags.DEFINE_bool("jit_compile", True, "Also time the float32 joint step compiled with XLA.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed calls per variant, alternating.")


def _timed_fit(model, dataset, steps: int, callbacks=()) -> tuple[float, float]:
  """(wall seconds, CPU seconds) of one fit call of `steps` batches."""
  wall, cpu = time.perf_counter(), time.process_time()
  model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
            callbacks=list(callbacks))
  return time.perf_counter() - wall, time.process_time() - cpu


def main(argv):
  del argv
  import keras
  from sjft_tf.training import callbacks as callbacks_lib
  from sjft_tf.training import losses, model as model_lib, sampler as sampler_lib, train

  if not os.path.exists(os.path.join(_FIRST_ROUND.value, "selection.json")):
    raise app.UsageError(f"{_FIRST_ROUND.value} is not a selection round (run make demo)")
  size = _INPUT_SIZE.value
  pairs_config = sampler_lib.PairConfig(batch_size=_BATCH_SIZE.value,
                                        resize_size=size + size // 8, crop_size=size)
  pairs = sampler_lib.PairSampler(_FIRST_ROUND.value, pairs_config)
  config = model_lib.ModelConfig(base=_BASE.value, weights="", input_size=size,
                                 alpha=_ALPHA.value if "MobileNet" in _BASE.value else None)
  keras.utils.set_random_seed(0)
  joint = model_lib.build_joint_model(config, len(pairs.target_class_names),
                                      len(pairs.source_class_names))
  losses.compile_joint(joint, keras.optimizers.SGD(0.01, momentum=0.9))
  plain = model_lib.build_joint_model(config, len(pairs.target_class_names))
  plain.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  plain_data = train.target_only_dataset(pairs.target_spec_dir, pairs.target_split,
                                         pairs_config).map(lambda x, y: (x, y["target"]))
  with tempfile.TemporaryDirectory() as rounds_dir:
    rounds = callbacks_lib.SelectiveRounds(pairs, rounds_dir)
    variants = {"joint": (joint, pairs.dataset(), [rounds]), "plain": (plain, plain_data, [])}
    extra = [(policy, False) for policy in _POLICIES.value] + (
        [("float32", True)] if _JIT.value else [])
    for policy, jit in extra:
      keras.utils.set_random_seed(0)
      variant = model_lib.build_joint_model(dataclasses.replace(config, dtype_policy=policy),
                                            len(pairs.target_class_names),
                                            len(pairs.source_class_names))
      losses.compile_joint(variant, keras.optimizers.SGD(0.01, momentum=0.9),
                           jit_compile=jit)
      variants[f"joint {policy}{' jit' if jit else ''}"] = (
          variant, pairs.dataset(), [callbacks_lib.SelectiveRounds(pairs, rounds_dir)])
    for model, dataset, callbacks in variants.values():
      _timed_fit(model, dataset, _STEPS.value, callbacks)  # warm-up and compilation
    times = {name: [] for name in variants}
    for _ in range(_REPEATS.value):
      for name, (model, dataset, callbacks) in variants.items():
        times[name].append(_timed_fit(model, dataset, _STEPS.value, callbacks))
  images = _STEPS.value * _BATCH_SIZE.value
  print(f"{_BASE.value} at {size} px, batch {_BATCH_SIZE.value}, {_STEPS.value} batches a "
        f"call, {_REPEATS.value} alternating calls each:")
  for name, values in times.items():
    print(f"  {name:6s} best {images / min(w for w, _ in values):8.1f} images/s, "
          f"{images / min(c for _, c in values):8.1f} images per CPU-s")
  best = {name: min(w for w, _ in values) for name, values in times.items()}
  adjacent = np.median([j[0] / p[0] for j, p in zip(times["joint"], times["plain"])])
  print(f"joint overhead vs plain fine-tuning: best calls {best['joint'] / best['plain'] - 1:+.1%}, "
        f"median of adjacent calls {adjacent - 1:+.1%} (goal: at most +10%)")
  for name in variants:
    if name.startswith("joint "):
      ratio = np.median([j[0] / v[0] for j, v in zip(times["joint"], times[name])])
      print(f"{name} vs joint float32: {best['joint'] / best[name]:.2f}x the speed (best "
            f"calls), {ratio:.2f}x (median of adjacent calls)")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
