"""CIFAR-style residual networks (He et al., CVPR 2016, section 4.2), for training from
scratch at 32-64 px: a 3x3 stem, three stages of basic blocks at strides 1, 2, 2,
global pooling.

Depth 6n + 2 (n basic blocks of two 3x3 convolutions a stage): CifarResNet8 (n = 1),
CifarResNet14, CifarResNet20 (the paper's smallest), CifarResNet32. Stage widths are
`base_width` x (1, 2, 4) (16 in the paper; ours 32, so CifarResNet8 has 308,704
parameters without a top, 334,504 with a 200-class one). `alpha` scales the widths as
MobileNet's does, so the package's width flag sizes it too. A shortcut that changes
width or resolution is a 1x1 convolution with batch norm (He et al.'s option B).

Inputs: float RGB scaled by `applications.preprocess(images, "tf")`, to [-1, 1].
Pure keras.layers: runs under the TensorFlow and JAX backends.
"""

import functools

import keras

from sjft_tf import errors

DEPTHS = (8, 14, 20, 32, 44, 56)
BASE_WIDTH = 32
BATCH_NORM_EPSILON = 1e-5


def stage_widths(alpha: float = 1.0, base_width: int = BASE_WIDTH) -> tuple[int, int, int]:
  """The three stages' channel counts: base_width x alpha x (1, 2, 4), at least 1."""
  width = max(1, int(round(base_width * alpha)))
  return width, 2 * width, 4 * width


def _conv(filters: int, strides: int, name: str, kernel: int = 3):
  return keras.layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False,
                             kernel_initializer="he_normal", name=name)


def _batch_norm(name: str):
  return keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=0.9,
                                         name=name)


def _basic_block(x, filters: int, strides: int, name: str):
  """conv-bn-relu-conv-bn, plus the shortcut, then relu: [b, h, w, c] ->
  [b, h / strides, w / strides, filters]."""
  shortcut = x
  if strides != 1 or x.shape[-1] != filters:
    shortcut = _conv(filters, strides, f"{name}_0_conv", kernel=1)(x)
    shortcut = _batch_norm(f"{name}_0_bn")(shortcut)
  x = _conv(filters, strides, f"{name}_1_conv")(x)
  x = _batch_norm(f"{name}_1_bn")(x)
  x = keras.layers.ReLU(name=f"{name}_1_relu")(x)
  x = _conv(filters, 1, f"{name}_2_conv")(x)
  x = _batch_norm(f"{name}_2_bn")(x)
  x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
  return keras.layers.ReLU(name=f"{name}_out")(x)


def CifarResNet(depth: int = 8, include_top: bool = True, weights: str | None = None,
                input_shape=(None, None, 3), pooling: str | None = None,
                classes: int = 1000, alpha: float = 1.0,
                base_width: int = BASE_WIDTH) -> keras.Model:
  """A CIFAR-style ResNet with keras.applications' arguments.

  Args:
    depth: 6n + 2 layers with weights (DEPTHS lists the usual ones).
    include_top: with a `classes`-way linear classifier (logits).
    weights: None (random: there are no pretrained weights) or a Keras weights file
      of this network.
    input_shape: (height, width, 3); None sides accept any size.
    pooling: None (the last feature map), "avg" or "max" (a vector), without the top.
    classes: classifier outputs, with the top.
    alpha: width multiplier of every stage.
    base_width: the first stage's width at alpha 1.
  Returns:
    A functional model: float [batch, h, w, 3] in [-1, 1] -> [batch, h/4, w/4,
    4 x width], [batch, 4 x width] pooled, or [batch, classes] logits.
  """
  if depth < 8 or (depth - 2) % 6:
    raise errors.InputError(f"CifarResNet depth must be 6n + 2 >= 8, e.g. {DEPTHS}; got {depth}")
  if weights == "imagenet":
    raise errors.InputError("CifarResNet has no ImageNet weights: it is trained from scratch "
                            "(weights='' / None)")
  blocks = (depth - 2) // 6
  images = keras.Input(input_shape, name="image")
  x = _conv(stage_widths(alpha, base_width)[0], 1, "stem_conv")(images)
  x = _batch_norm("stem_bn")(x)
  x = keras.layers.ReLU(name="stem_relu")(x)
  for stage, filters in enumerate(stage_widths(alpha, base_width)):
    for block in range(blocks):
      strides = 2 if stage > 0 and block == 0 else 1
      x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
  if include_top:
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
  elif pooling == "avg":
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  elif pooling == "max":
    x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
  model = keras.Model(images, x, name=f"cifar_resnet{depth}")
  if weights:
    model.load_weights(weights)
  return model


def _named(depth: int):
  network = functools.partial(CifarResNet, depth)
  network.__doc__ = f"CifarResNet of depth {depth} (see CifarResNet)."
  return network


NETWORKS = {f"CifarResNet{depth}": _named(depth) for depth in DEPTHS}
