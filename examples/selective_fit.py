r"""Selective joint fine-tuning inside your own `model.fit`, without sjft-train.

  python examples/selective_fit.py --first_round=runs/demo/selection/round_000 \
      --output_dir=/tmp/selective_fit

Everything sjft-train does for a round lives in two objects: `PairSampler` (the paired
tf.data input, whose pools follow the rounds) and the `SelectiveRounds` callback (which
predicts the target images every few epochs, raises the hard ones' levels and switches
the sampler's pools). Swap in your own model, optimizer or callbacks freely: the model
needs `target` and `source` outputs, and `compile_joint` gives it the per-domain loss.
"""

import os

import keras
from absl import app, flags

from sjft_tf.training import callbacks, losses, model, sampler

_FIRST_ROUND = flags.DEFINE_string("first_round", "runs/demo/selection/round_000", "Selection round to start from.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "/tmp/selective_fit", "Where rounds, backups and logs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Epochs in all.")
_EPOCHS_PER_ROUND = flags.DEFINE_integer("epochs_per_round", 2, "Epochs per selection round.")
_STEPS_PER_EPOCH = flags.DEFINE_integer("steps_per_epoch", 20, "Batches per epoch.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 64, "Input side in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Images per batch, both domains.")


def main(argv):
  del argv
  pairs = sampler.PairSampler(_FIRST_ROUND.value, sampler.PairConfig(
      batch_size=_BATCH_SIZE.value, resize_size=_INPUT_SIZE.value + _INPUT_SIZE.value // 8,
      crop_size=_INPUT_SIZE.value))
  keras.utils.set_random_seed(0)
  net = model.build_joint_model(
      model.ModelConfig(base="MobileNet", weights="", input_size=_INPUT_SIZE.value, alpha=0.25),
      len(pairs.target_class_names), len(pairs.source_class_names))
  losses.compile_joint(net, keras.optimizers.SGD(0.05, momentum=0.9))
  history = net.fit(
      pairs.dataset(), epochs=_EPOCHS.value, steps_per_epoch=_STEPS_PER_EPOCH.value,
      verbose=2, callbacks=[
          callbacks.SelectiveRounds(pairs, os.path.join(_OUTPUT_DIR.value, "rounds"),
                                    epochs_per_round=_EPOCHS_PER_ROUND.value),
          keras.callbacks.BackupAndRestore(os.path.join(_OUTPUT_DIR.value, "backup")),
          keras.callbacks.TensorBoard(os.path.join(_OUTPUT_DIR.value, "logs"))])
  print("selection rounds:", [int(r) for r in history.history["selection_round"]])


if __name__ == "__main__":
  app.run(main)
