r"""sjft-train: selective joint fine-tuning of one network on the target and the selected
source images, in rounds with hard-sample retrieval (or plain fine-tuning).

  sjft-train --flagfile=flags/train/demo.flags
  sjft-train --first_round=runs/flowers102/selection/round_000 \
      --output_dir=runs/flowers102/train --base=MobileNet --alpha=0.25 \
      --weights=../shared/weights/mobilenet_v1_0.25_imagenet/mobilenet_2_5_224_tf_no_top.h5 \
      --input_size=96 --resize_size=110 --total_steps=3000 --epochs_per_round=10
  sjft-train --target_spec_dir=runs/flowers102/data/target --output_dir=runs/f/baseline ...

A killed run resumes where its last epoch ended when rerun with the same flags.
TensorBoard: tensorboard --logdir=<output_dir>/logs
"""

from absl import app, flags

from sjft_tf.training import model, optimization, regularization, sampler, train
from sjft_tf.cli import level_flags, runner

# Data.
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Run folder: backups, logs, rounds, model.keras, train_report.json.", required=True)
_FIRST_ROUND = flags.DEFINE_string("first_round", "", "Selection round folder to start from (round_000 of sjft-select); empty: target only.")
_TARGET_SPEC_DIR = flags.DEFINE_string("target_spec_dir", "", "Target dataset folder, for --first_round='' (plain fine-tuning).")
_TARGET_SPLIT = flags.DEFINE_string("target_split", "train", "Target split to train on, for --first_round=''.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", sampler.PairConfig.batch_size, "Images per batch, both domains together (even; paper 20).", lower_bound=2)
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", sampler.PairConfig.resize_size, "Images are resized to this square first (paper 256).")
_CROP_SIZE = flags.DEFINE_integer("crop_size", None, "Random crop side (default: --input_size).")
_SEED = flags.DEFINE_integer("seed", sampler.PairConfig.seed, "Seed of the initialisation, the pairs and the augmentation.")
_MAX_ENCODED_GIB = flags.DEFINE_float("max_encoded_gib", sampler.PairConfig.max_encoded_gib, "Refuse to hold more encoded source images in memory than this.")

# Model.
_BASE = flags.DEFINE_string("base", model.ModelConfig.base, "keras.applications base: ResNet50V2/101V2/152V2, MobileNet, MobileNetV2, EfficientNetB0...")
_WEIGHTS = flags.DEFINE_string("weights", model.ModelConfig.weights, "imagenet, a no-top weights file, or empty for random.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", model.ModelConfig.input_size, "Input side in pixels.")
_ALPHA = flags.DEFINE_float("alpha", None, "MobileNet width multiplier.")
_FREEZE = flags.DEFINE_string("freeze", "", "Regular expression of base layer names to freeze.")
_DROPOUT = flags.DEFINE_float("dropout", 0.0, "Dropout on the pooled feature.")
_HEAD_INIT_STDDEV = flags.DEFINE_float("head_init_stddev", model.ModelConfig.head_init_stddev, "Heads start from N(0, stddev^2).")

# Optimisation.
_LEARNING_RATE = flags.DEFINE_float("learning_rate", optimization.OptimizerConfig.learning_rate, "Base learning rate.")
_MOMENTUM = flags.DEFINE_float("momentum", optimization.OptimizerConfig.momentum, "SGD momentum.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", optimization.OptimizerConfig.weight_decay, "Decoupled weight decay (w -= lr * wd * w).")
_SCHEDULE = flags.DEFINE_enum("schedule", "cosine", ["cosine", "step"], "Learning-rate schedule.")
_DECAY_EVERY = flags.DEFINE_integer("decay_every_steps", 0, "Step schedule: decay every this many batches.")
_DECAY_FACTOR = flags.DEFINE_float("decay_factor", 0.1, "Step schedule: the factor.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 0, "Cosine schedule: linear warm-up batches.")
_ACCUMULATION = flags.DEFINE_integer("accumulation_steps", 1, "Average this many batches' gradients per update.", lower_bound=1)
_HEAD_LR_MULTIPLIER = flags.DEFINE_float("head_learning_rate_multiplier", 1.0, "The heads learn at this multiple of the learning rate (fine-tuning practice: 10).")
_L2SP_ALPHA = flags.DEFINE_float("l2sp_alpha", 0.0, "L2-SP: pull of the base towards its pretrained weights (0: off; Li et al. 2018: 0.01-0.1; set --weight_decay=0 with it).")
_L2SP_BETA = flags.DEFINE_float("l2sp_beta", regularization.L2SPConfig.beta, "L2-SP: plain L2 on the heads (with --l2sp_alpha > 0).")

# Run.
_TOTAL_STEPS = flags.DEFINE_integer("total_steps", 1000, "Batches to train, all rounds together.", lower_bound=1)
_STEPS_PER_EPOCH = flags.DEFINE_integer("steps_per_epoch", 100, "Batches per epoch (backup, log and round interval).", lower_bound=1)
_EPOCHS_PER_ROUND = flags.DEFINE_integer("epochs_per_round", 0, "Epochs per selection round; 0: no hard-sample retrieval.", lower_bound=0)
_TARGET_WEIGHT = flags.DEFINE_float("target_loss_weight", 0.5, "Weight of the target head's loss.")
_SOURCE_WEIGHT = flags.DEFINE_float("source_loss_weight", 0.5, "Weight of the source head's loss.")
_TARGET_BN = flags.DEFINE_bool("target_batch_norm_for_levels", False, "Predict the target images for the level update with batch norm statistics re-estimated on them (for runs from scratch; the model is unchanged).")
_STRATEGY = flags.DEFINE_enum("strategy", "mirrored", list(train.STRATEGIES), "tf.distribute strategy (multi_worker reads TF_CONFIG).")
_VERBOSE = flags.DEFINE_integer("verbose", 2, "Keras progress: 0 silent, 1 bar, 2 a line per epoch.")


def config_from_flags() -> train.TrainConfig:
  rule = level_flags.level_rule()
  return train.TrainConfig(
      output_dir=_OUTPUT_DIR.value, first_round=_FIRST_ROUND.value,
      target_spec_dir=_TARGET_SPEC_DIR.value, target_split=_TARGET_SPLIT.value,
      model=model.ModelConfig(_BASE.value, _WEIGHTS.value, _INPUT_SIZE.value, _ALPHA.value,
                              _FREEZE.value, _DROPOUT.value, _HEAD_INIT_STDDEV.value),
      optimizer=optimization.OptimizerConfig(
          _LEARNING_RATE.value, _MOMENTUM.value, _WEIGHT_DECAY.value, _SCHEDULE.value,
          _DECAY_EVERY.value, _DECAY_FACTOR.value, _WARMUP.value, _ACCUMULATION.value,
          _HEAD_LR_MULTIPLIER.value),
      pairs=sampler.PairConfig(_BATCH_SIZE.value, _RESIZE_SIZE.value,
                               _CROP_SIZE.value or _INPUT_SIZE.value, _SEED.value,
                               rule.max_level, _MAX_ENCODED_GIB.value),
      total_steps=_TOTAL_STEPS.value, steps_per_epoch=_STEPS_PER_EPOCH.value,
      epochs_per_round=_EPOCHS_PER_ROUND.value, target_loss_weight=_TARGET_WEIGHT.value,
      source_loss_weight=_SOURCE_WEIGHT.value, level_rule=rule,
      l2sp=regularization.L2SPConfig(_L2SP_ALPHA.value, _L2SP_BETA.value),
      target_batch_norm_for_levels=_TARGET_BN.value, strategy=_STRATEGY.value,
      verbose=_VERBOSE.value)


def main(argv):
  del argv
  config = config_from_flags()
  if bool(config.first_round) == bool(config.target_spec_dir):
    raise app.UsageError("give --first_round (joint) or --target_spec_dir (target only)")
  report = train.train(config)
  logs = report["final_epoch_logs"]
  print(f"trained {config.output_dir}: {len(report['target_class_names'])} target classes, "
        f"{len(report['source_class_names'])} source-head classes, "
        f"{report['images_per_s']:.0f} images/s; last epoch: "
        + ", ".join(f"{k} {v:.4g}" for k, v in sorted(logs.items())))


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
