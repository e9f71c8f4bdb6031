"""Target-head probabilities of a split, by example id (for rounds and evaluation)."""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from sjft_tf import errors
from sjft_tf.data import pipeline
from sjft_tf.training.model import TARGET_HEAD

VIEWS = ("centre", "ten_crops")


def target_probabilities(model, spec, split: str, reader: pipeline.ReaderConfig,
                         views: str = "centre", max_images: int = 0,
                         head: str = TARGET_HEAD
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Softmax of the target head (or `head`) on every image of `split`.

  Args:
    model: a model from `build_joint_model` (or any model with a `target` output).
    spec: the target DatasetSpec or its folder.
    reader: evaluation reading (resize_size, crop_size, batch_size).
    views: "centre" (one centre crop) or "ten_crops" (centre + 4 corners and their
      flips, probabilities averaged: the multi-crop test of the paper).
    max_images: only the split's first this many images (0: all).
    head: the model output read: the target head, or the source head (SOURCE_HEAD)
      on a source split (labels are then the source dataset's, not the head's).
  Returns:
    (ids str [n], labels int64 [n], probabilities float32 [n, classes]) in spec order.
  """
  if views not in VIEWS:
    raise errors.InputError(f"unknown views {views!r}; known: {VIEWS}")

  probabilities = _probabilities_function(model, views, head)
  dataset = (pipeline.make_dataset(spec, split, reader, training=False) if views == "centre"
             else pipeline.make_multicrop_dataset(spec, split, reader))
  if max_images:
    dataset = dataset.unbatch().take(max_images).batch(reader.batch_size)
  ids, labels, rows = [], [], []
  with pipeline.naming_damaged_shards(spec, split):
    for batch in dataset:
      rows.append(probabilities(batch["image"]).numpy())
      ids.append(batch["id"].numpy().astype(str))
      labels.append(batch["label"].numpy())
  return np.concatenate(ids), np.concatenate(labels), np.concatenate(rows)


def _probabilities_function(model, views: str, head: str):
  """The traced softmax of `head` for `views`, one per (model, views, head): kept on
  the model (outside Keras' attribute tracking), so a callback that predicts every
  epoch traces once, not once an epoch."""
  functions = model.__dict__.get("_sjft_probabilities")
  if functions is None:
    functions = {}
    object.__setattr__(model, "_sjft_probabilities", functions)
  if (views, head) not in functions:
    @tf.function(reduce_retracing=True)
    def probabilities(images):
      if views == "centre":
        return tf.nn.softmax(model(images, training=False)[head])
      shape = tf.shape(images)
      flat = tf.reshape(images, tf.concat([[-1], shape[2:]], 0))
      per_view = tf.nn.softmax(model(flat, training=False)[head])
      return tf.reduce_mean(tf.reshape(per_view, [shape[0], shape[1], -1]), axis=1)
    functions[(views, head)] = probabilities
  return functions[(views, head)]


def _batch_norm_layers(model) -> list:
  return [layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
          if isinstance(layer, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def target_batch_norm(model, spec, split: str, reader: pipeline.ReaderConfig):
  """Within the block, batch norm's moving statistics are those of `split`'s images.

  Each batch norm layer's moving mean and variance become the average of its batch
  statistics over the split (one pass, centre crops); on leaving, the model's own
  statistics return, so training continues unchanged. For predictions of a model
  whose moving averages have not settled (early in training from scratch, where a
  model in inference mode can predict one class for everything).
  """
  layers = _batch_norm_layers(model)
  saved = [(layer.momentum, np.array(layer.moving_mean), np.array(layer.moving_variance))
           for layer in layers]
  try:
    for count, batch in enumerate(pipeline.make_dataset(spec, split, reader, training=False),
                                  start=1):
      for layer in layers:  # a running average of the batches' statistics
        layer.momentum = (count - 1) / count
      model(batch["image"], training=True)
    for layer, (momentum, _, _) in zip(layers, saved):
      layer.momentum = momentum
    yield model
  finally:
    for layer, (momentum, mean, variance) in zip(layers, saved):
      layer.momentum = momentum
      layer.moving_mean.assign(mean)
      layer.moving_variance.assign(variance)
