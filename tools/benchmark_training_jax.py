"""Times the joint model's training step under Keras' JAX backend, fed from device
arrays (no TensorFlow, no tf.data): the model, loss and optimizer of sjft-train.

For a GPU host that has JAX but no TensorFlow (../shared/DEVICE.md): carry Keras as
wheels, then
  KERAS_BACKEND=jax python3 -m tools.benchmark_training_jax
The default is the reference setting of DEVICE.md: ResNet-50 (ResNet50V2 here, the
paper's pre-activation family) with a target and a source head, batch 128 (64 pairs),
224 px, mixed bfloat16; its reference is about 3,700-3,900 images/s on one H100.
Random weights and random images (the speed does not depend on them). Each step is
`model.train_on_batch`, the step `model.fit` runs; it returns the losses to the host,
a sync per step that a fit loop does not make, so this slightly understates fit.
Prints images/s and the device. Runs under any Keras backend, on whatever it has.
"""

import time

from absl import app, flags
import numpy as np

from tools import jax_host

_BASE = flags.DEFINE_string("base", "ResNet50V2", "keras.applications base.")
_ALPHA = flags.DEFINE_float("alpha", None, "MobileNet width multiplier.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per batch, both domains.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Square image side, pixels.")
_TARGET_CLASSES = flags.DEFINE_integer("target_classes", 102, "Target-head outputs.")
_SOURCE_CLASSES = flags.DEFINE_integer("source_classes", 200, "Source-head outputs.")
_PRECISION = flags.DEFINE_enum("precision", "mixed_bfloat16", ["float32", "mixed_bfloat16", "mixed_float16"], "Keras dtype policy.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps (after 3 warm-up steps).")


def main(argv):
  del argv
  import keras
  from sjft_tf.training import losses, model as model_lib

  keras.config.set_dtype_policy(_PRECISION.value)
  keras.utils.set_random_seed(0)
  config = model_lib.ModelConfig(base=_BASE.value, weights="", input_size=_IMAGE_SIZE.value,
                                 alpha=_ALPHA.value)
  model = model_lib.build_joint_model(config, _TARGET_CLASSES.value, _SOURCE_CLASSES.value)
  losses.compile_joint(model, keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=1e-4))
  rng = np.random.default_rng(0)
  batch = _BATCH_SIZE.value
  images = keras.ops.convert_to_tensor(rng.uniform(
      0, 255, (batch, _IMAGE_SIZE.value, _IMAGE_SIZE.value, 3)).astype(np.float32))
  rows = np.arange(batch)
  labels = {"target": keras.ops.convert_to_tensor(np.where(
                rows % 2 == 0, rng.integers(0, _TARGET_CLASSES.value, batch), -1)),
            "source": keras.ops.convert_to_tensor(np.where(
                rows % 2 == 1, rng.integers(0, _SOURCE_CLASSES.value, batch), -1))}
  for _ in range(3):
    model.train_on_batch(images, labels)
  started = time.perf_counter()
  for _ in range(_STEPS.value):
    logs = model.train_on_batch(images, labels, return_dict=True)
  seconds = time.perf_counter() - started
  print(f"{_BASE.value} + target/source heads, batch {batch}, {_IMAGE_SIZE.value} px, "
        f"{_PRECISION.value}, backend {keras.backend.backend()} on {jax_host.device()}: "
        f"{batch * _STEPS.value / seconds:.0f} images/s (loss {float(logs['loss']):.3f})")


if __name__ == "__main__":
  app.run(main)
