"""Times the histogram layer's counting formulations under Keras' JAX backend, fed from
numpy (no TensorFlow), alone and after a bank (`sjft_tf.descriptors.speed`).

For a GPU host that has JAX but no TensorFlow (../shared/DEVICE.md): carry Keras as
wheels, then
  KERAS_BACKEND=jax python3 -m tools.benchmark_descriptors_jax --bank=alexnet
Banks: "alexnet" (AlexNet-shaped conv1 96x11x11/4 + conv2 256x5x5, random weights, 352
channels x 100 bins: the paper's bank and the anchor of about 41,500 images/s on one
H100), "lite0", "mobilenet" (our default learned bank's shape) and "gabor". Edges are
fitted on the batch. Prints each method's images/s and its ratios to the lookup layer
and to the anchor. Runs under any Keras backend (KERAS_BACKEND), on whatever device.
"""

from absl import app, flags

_BANK = flags.DEFINE_enum("bank", "alexnet", ["alexnet", "lite0", "mobilenet", "gabor"],
                          "Which bank.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per batch.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Square image side, pixels.")
_NUM_BINS = flags.DEFINE_integer("num_bins", 100, "Bins per channel.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed batches (after 2 warm-up batches).")
_METHODS = flags.DEFINE_list("methods", ["lookup", "compare", "onehot"],
                             "Counting formulations (histogram.COUNTING_METHODS).")


def main(argv):
  del argv
  import keras
  from sjft_tf.descriptors import histogram, speed
  device = histogram.default_device_kind()
  if keras.backend.backend() == "jax":
    import jax
    device = str(jax.devices()[0])
  rates, info = speed.method_rates(speed.bank_by_name(_BANK.value), _IMAGE_SIZE.value,
                                   _BATCH_SIZE.value, _STEPS.value, _METHODS.value,
                                   _NUM_BINS.value)
  print(f"backend {keras.backend.backend()}, device {device}")
  print("\n".join(speed.format_rates(_BANK.value, rates, info)))


if __name__ == "__main__":
  app.run(main)
