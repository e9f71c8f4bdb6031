r"""sjft-reproduce: the paper's ablation table on real data (../shared): target Oxford
Flowers 102 (official 10-a-class train split, official test split), source Tiny
ImageNet 200 (part 1, 30,000 images), MobileNet v1 0.25 with the ImageNet weights of
../shared, every row with the same training budget, several seeds, and a K0 sweep.

  sjft-reproduce --flagfile=flags/reproduce/flowers102.flags
Stages that are complete are reused (rerun = resume). Writes results.json,
results.md and figures/ under --output_dir.
"""

import os
import time

from absl import app, flags

import sjft_tf
from sjft_tf.data import archives
from sjft_tf.experiments import ablation, reproduce
from sjft_tf.cli import beam_flags, config_flags, descriptors, ingest, runner, select

FLAG_VALUES = flags.FlagValues()
_UNPACK = flags.DEFINE_list("unpack", [], "Archives under ../shared/data to unpack first (idempotent), as make shared-data does: ARCHIVE into --unpack_dir, ARCHIVE=FOLDER into --unpack_dir/FOLDER.", flag_values=FLAG_VALUES)
_PREPARE_ONLY = flags.DEFINE_bool("prepare_only", False, "Stop after --unpack and --prepare_flagfiles (data ready, nothing trained).", flag_values=FLAG_VALUES)
_UNPACK_DIR = flags.DEFINE_string("unpack_dir", archives.DEFAULT_CACHE_DIR, "Where --unpack extracts, relative to the working directory (the presets' ingest flags read .cache/shared/...).", flag_values=FLAG_VALUES)
_PREPARE = flags.DEFINE_list("prepare_flagfiles", [], "Stage flag files run first, in order, as tool=flagfile (e.g. sjft-ingest=flags/ingest/flowers102.flags); each reuses its complete output.", flag_values=FLAG_VALUES)
# Every field of AblationConfig is a flag of its name, and the training template's
# fields are sjft-train's flags (--target_dir is its target_spec_dir), with this
# testbed's defaults.
_CONFIG = config_flags.define(
    FLAG_VALUES, ablation.AblationConfig, prefixes={"train.l2sp": "l2sp_"},
    skip=("train.output_dir", "train.first_round", "train.target_split",
          "train.epochs_per_round", "train.pairs.seed"),  # set per run
    names={"train.target_spec_dir": "target_dir"},
    defaults={"output_dir": "runs/reproduce", "gabor_descriptors": "",
              "learned_descriptors": "runs/flowers102/descriptors",
              "train.output_dir": "", "train.target_spec_dir": "data/flowers102",
              "train.strategy": "one_device",
              "train.model.base": "MobileNet", "train.model.alpha": 0.25,
              "train.model.input_size": 96,
              "train.model.weights": "../shared/weights/mobilenet_v1_0.25_imagenet/"
                                     "mobilenet_2_5_224_tf_no_top.h5",
              "train.pairs.resize_size": 110, "train.pairs.batch_size": 64,
              "train.total_steps": 480, "train.steps_per_epoch": 32})
# The Beam options of the descriptor and selection stages it prepares.
_BEAM = beam_flags.define(FLAG_VALUES)
_STAGES = {"sjft-ingest": ingest, "sjft-descriptors": descriptors, "sjft-select": select}


def main(argv):
  del argv
  config = _CONFIG()  # (ModelConfig drops --alpha for a network without a width)
  shared = archives.shared_dir()
  if (_UNPACK.value or _PREPARE.value) and shared is None:
    raise app.UsageError("preparing the data needs ../shared (or $SJFT_SHARED_DIR)")
  stage_seconds = {}
  for item in _UNPACK.value:
    t = time.time()
    archive, folder = archives.unpack_target(item, _UNPACK_DIR.value)
    archives.extract(os.path.join(shared, "data", archive), folder)
    stage_seconds[f"unpack {item}"] = round(time.time() - t, 1)
  for item in _PREPARE.value:
    tool, flagfile = item.split("=", 1)
    if tool not in _STAGES:
      raise app.UsageError(f"--prepare_flagfiles: unknown tool {tool}; known: {sorted(_STAGES)}")
    beam = _BEAM.forwarded() if tool in ("sjft-descriptors", "sjft-select") else []
    stage_seconds[item] = runner.run_stage(_STAGES[tool], flagfile, *beam)
  if _PREPARE_ONLY.value:
    print(f"prepared in {os.getcwd()} with sjft_tf of {os.path.dirname(sjft_tf.__file__)}: "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage_seconds.items()))
    return
  reproduce.run(config, stage_seconds)


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
