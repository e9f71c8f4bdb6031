"""The joint model of Ge & Yu 2017 (section 3.4): one shared base, two linear heads.

Input: float RGB [batch, size, size, 3] in [0, 255] (the network's own input scaling is
a layer of the model). Outputs: {"target": logits [batch, target classes], "source":
logits [batch, source-head classes]}; a model built without source classes has the
target head only (plain fine-tuning, and what export keeps).

Pure keras.layers: the same model runs under the TensorFlow and JAX backends.
"""

import dataclasses
import re

import keras

from sjft_tf import applications, bounds, errors, precision

TARGET_HEAD = "target"
SOURCE_HEAD = "source"


@dataclasses.dataclass
class ModelConfig:
  """The shared base and the heads.

  Attributes:
    base: a keras.applications class name: the paper's pre-activation family
      (ResNet50V2, ResNet101V2, ResNet152V2), MobileNet, MobileNetV2, EfficientNetB0...
    weights: "imagenet" (downloaded by Keras), a weights file of the base without its
      top (e.g. ../shared/weights/.../mobilenet_2_5_224_tf_no_top.h5), or "" for a
      random initialisation.
    input_size: side of the square input in pixels.
    alpha: width multiplier of the networks that take one (MobileNet, MobileNetV2, the
      CIFAR ResNets); set to None for the others (applications.width).
    freeze: a regular expression; base layers whose name matches it are frozen (not
      trained; batch norm among them runs in inference mode). "" trains everything,
      as the paper does; e.g. "^conv1" freezes ResNet-V2's stem, "." the whole base
      (a linear probe: only the heads learn).
    freeze_batch_norm: every BatchNormalization layer of the base is frozen: inference
      mode with its pretrained moving statistics, scale and offset kept, as Keras'
      transfer-learning guide fine-tunes (small target batches then cannot replace
      the ImageNet statistics).
    dropout: dropout rate on the pooled feature, before both heads.
    head_init_stddev: heads' kernels start from N(0, stddev^2), biases from 0 (paper:
      0.01, Caffe's gaussian filler).
    dtype_policy: "float32", "mixed_bfloat16" or "mixed_float16" (precision.py): the
      base computes in that precision; the heads, their logits and the losses stay
      float32.
  """
  base: str = "ResNet50V2"
  weights: str = "imagenet"
  input_size: int = bounds.field(224, lower=8)
  alpha: float | None = bounds.field(None, lower=0.01)
  freeze: str = ""
  freeze_batch_norm: bool = False
  dropout: float = bounds.field(0.0, lower=0.0, upper=0.99)
  head_init_stddev: float = bounds.field(0.01, lower=0.0)
  dtype_policy: str = dataclasses.field(default="float32", metadata={
      "flag": {"enum_values": list(precision.POLICIES)}})

  def __post_init__(self):
    self.alpha = applications.width(self.base, self.alpha)
    bounds.check(self)


def build_base(config: ModelConfig) -> keras.Model:
  """The pretrained base with global average pooling: [b, s, s, 3] -> [b, features]."""
  base = applications.build_application(
      config.base, config.weights or None, (config.input_size, config.input_size, 3),
      config.alpha, pooling="avg")
  if config.freeze:
    pattern = re.compile(config.freeze)
    frozen = [layer for layer in base.layers if pattern.search(layer.name)]
    if not frozen:
      raise errors.InputError(f"freeze pattern {config.freeze!r} matches no layer of "
                              f"{config.base}")
    for layer in frozen:
      layer.trainable = False
  if config.freeze_batch_norm:
    for layer in base.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.trainable = False
  return base


def _head(name: str, classes: int, stddev: float) -> keras.layers.Dense:
  # float32 under any policy: logits, softmax and losses keep float32's precision.
  return keras.layers.Dense(
      classes, name=name, dtype="float32",
      kernel_initializer=keras.initializers.RandomNormal(stddev=stddev),
      bias_initializer="zeros")


def build_joint_model(config: ModelConfig, target_classes: int,
                      source_classes: int = 0) -> keras.Model:
  """The shared base with a `target` head and, when source_classes > 0, a `source` head.

  Returns:
    A functional keras.Model: images [batch, s, s, 3] in [0, 255] -> dict of logits
    (see the module docstring). Heads output logits; apply softmax for probabilities.
  """
  if target_classes < 1:
    raise errors.InputError(f"target_classes must be >= 1, got {target_classes}")
  # The model and its layers take the policy (Model.compile reads the model's to wrap
  # the optimizer for loss scaling under mixed_float16); the heads are float32.
  with precision.dtype_policy(config.dtype_policy):
    extractor = applications.feature_extractor(config.base, build_base(config),
                                               config.input_size)
    features = extractor.output
    if config.dropout:
      features = keras.layers.Dropout(config.dropout, name="dropout")(features)
    heads = {TARGET_HEAD: target_classes, SOURCE_HEAD: source_classes}
    outputs = {name: _head(name, classes, config.head_init_stddev)(features)
               for name, classes in heads.items() if classes}
    return keras.Model(extractor.input, outputs, name=f"sjft_{config.base.lower()}")


def copy_weights(source: keras.Model, model: keras.Model, skip=()) -> list[str]:
  """Starts `model` (from `build_joint_model`) from another joint model's weights: the
  base, and each head that `source` has with the same classes, except the heads named
  in `skip` (left as initialised).

  Returns:
    The names of the layers copied (the base's, and the heads').
  Raises:
    ValueError: the bases differ (another network, width or input size).
  """
  copied = []
  for layer in model.layers:
    if not layer.weights or layer.name in skip:
      continue
    try:
      other = source.get_layer(layer.name)
    except ValueError:
      other = None
    if other is not None and [tuple(w.shape) for w in other.weights] == [
        tuple(w.shape) for w in layer.weights]:
      layer.set_weights(other.get_weights())
      copied.append(layer.name)
    elif layer.name not in (TARGET_HEAD, SOURCE_HEAD):
      raise errors.InputError(f"the starting model has no layer {layer.name!r} of the same "
                              f"shapes: another base")
  return copied
