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
from absl import flags

from sjft_tf import bounds, errors
from sjft_tf.cli import config_flags, runner

@dataclasses.dataclass
class TrainingBenchmarkConfig:
  """The benchmark's settings (each a flag of its name).

  Attributes:
    first_round: selection round (make demo writes the default one).
    base: keras.applications base (or EfficientNetLite0).
    alpha: MobileNet width multiplier (ignored by other bases).
    input_size: input side in pixels.
    batch_size: images per batch (joint: both domains).
    steps: batches per timed call.
    repeats: timed calls per variant, alternating.
    dtype_policies: precisions of the joint step compared with float32
      (precision.POLICIES); empty: none.
    jit_compile: also time the float32 joint step compiled with XLA.
  """
  first_round: str = "runs/demo/selection/round_000"
  base: str = "MobileNet"
  alpha: float = bounds.field(0.25, lower=0.01)
  input_size: int = bounds.field(64, lower=8)
  batch_size: int = bounds.field(32, lower=2)
  steps: int = bounds.field(40, lower=1)
  repeats: int = bounds.field(7, lower=1)
  dtype_policies: tuple[str, ...] = ("mixed_bfloat16",)
  jit_compile: bool = True

  def __post_init__(self):
    bounds.check(self)


FLAG_VALUES = flags.FlagValues()
_CONFIG = config_flags.define(FLAG_VALUES, TrainingBenchmarkConfig)


def _timed_fit(model, dataset, steps: int, callbacks=()) -> tuple[float, float]:
  """(wall seconds, CPU seconds) of one fit call of `steps` batches."""
  wall, cpu = time.perf_counter(), time.process_time()
  model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
            callbacks=list(callbacks))
  return time.perf_counter() - wall, time.process_time() - cpu


def main(argv):
  del argv
  settings = _CONFIG()
  import keras
  from sjft_tf.training import callbacks as callbacks_lib
  from sjft_tf.training import losses, model as model_lib, sampler as sampler_lib, train

  if not os.path.exists(os.path.join(settings.first_round, "selection.json")):
    raise errors.InputError(f"{settings.first_round} is not a selection round (run make demo)")
  size = settings.input_size
  pairs_config = sampler_lib.PairConfig(batch_size=settings.batch_size,
                                        resize_size=size + size // 8, crop_size=size)
  pairs = sampler_lib.PairSampler(settings.first_round, pairs_config)
  config = model_lib.ModelConfig(base=settings.base, weights="", input_size=size,
                                 alpha=settings.alpha)
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
    extra = [(policy, False) for policy in settings.dtype_policies] + (
        [("float32", True)] if settings.jit_compile else [])
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
      _timed_fit(model, dataset, settings.steps, callbacks)  # warm-up and compilation
    times = {name: [] for name in variants}
    for _ in range(settings.repeats):
      for name, (model, dataset, callbacks) in variants.items():
        times[name].append(_timed_fit(model, dataset, settings.steps, callbacks))
  images = settings.steps * settings.batch_size
  print(f"{settings.base} at {size} px, batch {settings.batch_size}, {settings.steps} batches a "
        f"call, {settings.repeats} alternating calls each:")
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
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
