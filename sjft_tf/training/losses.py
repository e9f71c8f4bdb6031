"""The joint loss (Ge & Yu 2017, section 3.4) and per-head accuracy, as Keras objects.

A mixed batch labels each head's rows with its own classes and the other domain's rows
with IGNORE_LABEL. Each head's loss is the mean cross-entropy over its own rows only:
Keras' `ignore_class` masks them and divides by the number of valid rows (not by the
whole mixed batch, which sample weights would do, halving each head's loss again).
The total is target_weight * CE_target + source_weight * CE_source (paper: 0.5, 0.5).

Under tf.distribute each replica averages over its own rows; the paired input puts
equally many rows of each domain on every replica, so the average over replicas is
the mean over the global batch.
"""

import keras
from keras import ops

from sjft_tf.training.model import SOURCE_HEAD, TARGET_HEAD

IGNORE_LABEL = -1


def head_loss() -> keras.losses.Loss:
  """Mean sparse cross-entropy over the rows whose label is not IGNORE_LABEL."""
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                    ignore_class=IGNORE_LABEL)


@keras.saving.register_keras_serializable(package="sjft_tf")
class HeadAccuracy(keras.metrics.Mean):
  """Top-1 accuracy over the rows whose label is not IGNORE_LABEL.

  update_state(labels int [batch], logits float [batch, classes]).
  """

  def __init__(self, name: str = "accuracy", dtype=None):
    super().__init__(name=name, dtype=dtype)

  def update_state(self, y_true, y_pred, sample_weight=None):
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    correct = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels),
                       self.dtype)
    valid = ops.cast(ops.not_equal(labels, IGNORE_LABEL), self.dtype)
    if sample_weight is not None:
      valid = valid * ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
    return super().update_state(correct, sample_weight=valid)

  def get_config(self):
    return {"name": self.name, "dtype": self.dtype}


def compile_joint(model: keras.Model, optimizer, target_weight: float = 0.5,
                  source_weight: float = 0.5, **compile_kwargs) -> None:
  """Compiles a model from `build_joint_model` with the joint loss and head accuracies.

  A target-only model gets the plain target loss (weight 1: plain fine-tuning). Either
  way the logs name each head's numbers alike: target_loss, target_accuracy (and
  source_loss, source_accuracy), and loss, the total with any regularisation.
  """
  heads = list(model.output_names) if hasattr(model, "output_names") else [TARGET_HEAD]
  if SOURCE_HEAD in heads:
    weights = {TARGET_HEAD: target_weight, SOURCE_HEAD: source_weight}
    metrics = {head: [HeadAccuracy()] for head in weights}
  else:
    # One output: Keras logs its metrics unprefixed, so they carry the head's name,
    # and its cross-entropy is logged apart from the total loss as a joint run's is.
    weights = {TARGET_HEAD: 1.0}
    metrics = {TARGET_HEAD: [HeadAccuracy(name=f"{TARGET_HEAD}_accuracy"),
                             keras.metrics.SparseCategoricalCrossentropy(
                                 from_logits=True, name=f"{TARGET_HEAD}_loss")]}
  model.compile(optimizer=optimizer,
                loss={head: head_loss() for head in weights},
                loss_weights=weights, metrics=metrics, **compile_kwargs)
