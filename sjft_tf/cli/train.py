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

from sjft_tf.training import train
from sjft_tf.cli import config_flags, runner

FLAG_VALUES = flags.FlagValues()
# Every field of TrainConfig is a flag of its name (--l2sp_alpha, --l2sp_beta for L2-SP).
config_from_flags = config_flags.define(
    FLAG_VALUES, train.TrainConfig, prefixes={"l2sp": "l2sp_"}, required=("output_dir",))


def main(argv):
  del argv
  config = config_from_flags()
  if bool(config.first_round) == bool(config.target_spec_dir):
    raise app.UsageError("give --first_round (joint) or --target_spec_dir (target only)")
  reused = train.is_finished(config.output_dir)
  report = train.train(config)
  logs = report["final_epoch_logs"]
  done = ("reused the finished run" if reused else
          f"trained {report['epochs_trained_this_call']} epochs of")
  speed = "" if reused else f", {report['images_per_s']:.0f} images/s"
  print(f"{done} {config.output_dir}: {len(report['target_class_names'])} target classes, "
        f"{len(report['source_class_names'])} source-head classes{speed}; last epoch: "
        + ", ".join(f"{k} {v:.4g}" for k, v in sorted(logs.items())))


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
