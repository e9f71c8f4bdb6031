"""keras.applications networks, and ours, as we use them: built by name, with their input
scaling.

Shared by the learned filter bank (descriptors) and the joint model (training), so both
read images as float RGB in [0, 255] and scale them the way the network was trained.
"""

import keras
from keras import ops

from sjft_tf.applications import cifar_resnet, efficientnet_lite

# keras.applications input scaling per family (the modes of imagenet_utils).
APPLICATION_PREPROCESSING = {
    "MobileNet": "tf", "MobileNetV2": "tf", "ResNet50V2": "tf", "ResNet101V2": "tf",
    "ResNet152V2": "tf", "Xception": "tf", "InceptionV3": "tf",
    "VGG16": "caffe", "VGG19": "caffe", "ResNet50": "caffe", "ResNet101": "caffe",
    "ResNet152": "caffe", "DenseNet121": "torch", "EfficientNetB0": "none",
    "EfficientNetLite0": "lite", **{name: "tf" for name in cifar_resnet.NETWORKS},
}
# Networks of this package (not in keras.applications), built by the same arguments.
OWN_APPLICATIONS = {"EfficientNetLite0": efficientnet_lite.EfficientNetLite0,
                    **cifar_resnet.NETWORKS}
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
  raise ValueError(f"unknown preprocessing mode {mode!r} (tf, caffe, torch, lite, none)")


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


def takes_alpha(application: str) -> bool:
  """Whether `application` has a width multiplier `alpha` (MobileNet, MobileNetV2 and
  the CIFAR ResNets); a width flag is dropped for the others."""
  return application.startswith("MobileNet") or application in cifar_resnet.NETWORKS


def build_application(application: str, weights=None, input_shape=(None, None, 3),
                      **application_kwargs) -> keras.Model:
  """A keras.applications network (or one of OWN_APPLICATIONS) without its top.

  Args:
    application: class name in keras.applications, e.g. "ResNet152V2", "MobileNet",
      or "EfficientNetLite0".
    weights: "imagenet" (Keras downloads; EfficientNetLite0's come from an installed
      package), a weights file path, or None (random).
    input_shape: (height, width, 3); None sides accept any size.
    application_kwargs: e.g. alpha=0.25 for MobileNet, pooling="avg".
  """
  if application not in APPLICATION_PREPROCESSING:
    raise ValueError(f"unknown application {application!r}; known: "
                     f"{sorted(APPLICATION_PREPROCESSING)}")
  network = OWN_APPLICATIONS.get(application) or getattr(keras.applications, application)
  return network(
      include_top=False, weights=weights, input_shape=input_shape, **application_kwargs)
