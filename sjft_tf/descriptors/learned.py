"""The nonlinear filter bank of Ge & Yu 2017: the first layers of a pretrained network,
each layer's response taken before its activation.

The paper used AlexNet conv1 + conv2 (the second sees the first through the network's
own ReLU and pooling). Any Keras model serves: name its early layers, e.g. MobileNet
`conv1` + `conv_pw_1`, VGG16 `block1_conv1` + `block2_conv1`, ResNet50V2 `conv1_conv`.
"Before its activation" means the layer's output after any BatchNormalization that
directly follows it (BN is affine at inference, as a bias is), and for a layer with a
fused activation (VGG's Conv2D(activation="relu")), a linear copy sharing its weights.
"""

import keras
from keras import ops

from sjft_tf import errors
from sjft_tf.applications import backbone, build_application, preprocess

def _consumers(model: keras.Model, tensor) -> list[keras.layers.Layer]:
  return [layer for layer in model.layers
          if not isinstance(layer, keras.layers.InputLayer)
          and any(t is tensor for t in keras.tree.flatten(layer.input))]


def preactivation_output(model: keras.Model, layer_name: str):
  """The symbolic response of `layer_name` before its activation (module docstring)."""
  layer = model.get_layer(layer_name)
  activation = getattr(layer, "activation", None)
  if activation is not None and activation is not keras.activations.linear:
    config = {**layer.get_config(), "activation": "linear",
              "name": f"{layer.name}_preactivation"}
    linear = layer.__class__.from_config(config)
    output = linear(layer.input)
    linear.set_weights(layer.get_weights())
    return output
  output = layer.output
  while True:
    consumers = _consumers(model, output)
    if len(consumers) != 1 or not isinstance(consumers[0], keras.layers.BatchNormalization):
      return output
    output = consumers[0].output


def preactivation_extractor(model: keras.Model, layer_names) -> keras.Model:
  """A model from `model`'s input to the pre-activation responses of `layer_names`."""
  outputs = [preactivation_output(model, name) for name in layer_names]
  return keras.Model(model.input, outputs, name="preactivation_extractor")


@keras.saving.register_keras_serializable(package="sjft_tf")
class LearnedKernelBank(keras.layers.Layer):
  """A pretrained network's early layers as a filter bank (Ge & Yu 2017's nonlinear bank).

  Call: float [batch, h, w, 3] RGB in [0, 255] -> list of response maps
  [batch, h_i, w_i, c_i], one per layer of the extractor, in inference mode.

  Args:
    extractor: a model from images (after `preprocessing`) to the responses, usually
      from `preactivation_extractor`; serialised with the layer, weights included.
    preprocessing: input scaling mode of the network (see `preprocess`).
    layer_names: names of the layers the responses come from (for the metadata).
  """

  def __init__(self, extractor: keras.Model, preprocessing: str = "tf",
               layer_names=None, **kwargs):
    super().__init__(**kwargs)
    if isinstance(extractor, dict):
      extractor = keras.saving.deserialize_keras_object(extractor)
    self.extractor = extractor
    self.preprocessing = preprocessing
    outputs = keras.tree.flatten(extractor.outputs)
    self.layer_names = list(layer_names or [f"output_{i}" for i in range(len(outputs))])
    if len(self.layer_names) != len(outputs):
      raise errors.InputError(f"{len(self.layer_names)} layer names for {len(outputs)} outputs")
    preprocess(ops.zeros((1, 1, 1, 3)), preprocessing)  # fail early on a bad mode

  def channel_groups(self) -> list[tuple[str, int]]:
    """(layer name, channels) of each response map, in output order."""
    return [(name, int(t.shape[-1])) for name, t in
            zip(self.layer_names, keras.tree.flatten(self.extractor.outputs))]

  def call(self, images):
    responses = self.extractor(preprocess(images, self.preprocessing), training=False)
    return list(responses) if isinstance(responses, (list, tuple)) else [responses]

  def compute_output_shape(self, input_shape):
    return [tuple(t.shape) for t in keras.tree.flatten(self.extractor.outputs)]

  def get_config(self):
    return {**super().get_config(),
            "extractor": keras.saving.serialize_keras_object(self.extractor),
            "preprocessing": self.preprocessing, "layer_names": self.layer_names}


def application_bank(application: str, layer_names, weights=None,
                     **application_kwargs) -> LearnedKernelBank:
  """A bank from a keras.applications network.

  Args:
    application: class name in keras.applications, e.g. "MobileNet", "VGG16".
    layer_names: its early layers, e.g. ["conv1", "conv_pw_1"].
    weights: "imagenet" (downloads), a weights file path, or None (random).
    application_kwargs: e.g. alpha=0.25 for MobileNet.
  """
  model = build_application(application, weights, (None, None, 3), **application_kwargs)
  return LearnedKernelBank(preactivation_extractor(model, layer_names),
                           backbone(application).preprocessing, layer_names,
                           name=f"{application.lower()}_bank")
