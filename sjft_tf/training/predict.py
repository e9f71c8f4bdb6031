"""Target-head probabilities of a split, by example id (for rounds and evaluation)."""

import numpy as np
import tensorflow as tf

from sjft_tf.data import pipeline
from sjft_tf.training.model import TARGET_HEAD


def target_probabilities(model, spec, split: str,
                         reader: pipeline.ReaderConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Softmax of the target head on every image of `split`, centre-cropped.

  Args:
    model: a model from `build_joint_model` (or any model with a `target` output).
    spec: the target DatasetSpec or its folder.
    reader: evaluation reading (resize_size, crop_size, batch_size).
  Returns:
    (ids str [n], labels int64 [n], probabilities float32 [n, classes]) in spec order.
  """
  @tf.function(reduce_retracing=True)
  def probabilities(images):
    return tf.nn.softmax(model(images, training=False)[TARGET_HEAD])

  ids, labels, rows = [], [], []
  for batch in pipeline.make_dataset(spec, split, reader, training=False):
    rows.append(probabilities(batch["image"]).numpy())
    ids.append(batch["id"].numpy().astype(str))
    labels.append(batch["label"].numpy())
  return np.concatenate(ids), np.concatenate(labels), np.concatenate(rows)
