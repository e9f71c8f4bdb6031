"""Times the descriptor layers under Keras' JAX backend, fed from numpy (no TensorFlow).

For a GPU host that has JAX but no TensorFlow (../shared/DEVICE.md): carry Keras as
wheels, then
  KERAS_BACKEND=jax python3 -m tools.benchmark_descriptors_jax --bank=alexnet
Banks: "alexnet" (AlexNet-shaped conv1 96x11x11/4 + conv2 256x5x5, random weights, 352
channels x 100 bins: the paper's bank and the reference figure of about 44,000
images/s on one H100), "mobilenet" (our default learned bank's shape, random weights)
and "gabor". Edges are fitted on the first batch. Prints images/s and the device.
Runs under any Keras backend (KERAS_BACKEND), on whatever device it has.
"""

import time

from absl import app, flags
import numpy as np

_BANK = flags.DEFINE_enum("bank", "alexnet", ["alexnet", "mobilenet", "gabor"], "Which bank.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per batch.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Square image side, pixels.")
_NUM_BINS = flags.DEFINE_integer("num_bins", 100, "Bins per channel.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed batches (after 2 warm-up batches).")


def _alexnet_bank():
  import keras
  from sjft_tf.descriptors import learned
  images = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(images)
  x = keras.layers.MaxPooling2D(3, 2)(x)
  x = keras.layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
  network = keras.Model(images, x)
  return learned.LearnedKernelBank(learned.preactivation_extractor(network, ["conv1", "conv2"]),
                                   "caffe", ["conv1", "conv2"])


def _bank(kind: str):
  from sjft_tf.descriptors import gabor, learned
  if kind == "alexnet":
    return _alexnet_bank()
  if kind == "mobilenet":
    return learned.application_bank("MobileNet", ["conv1", "conv_pw_1"], None, alpha=0.25)
  return gabor.GaborBank()


def main(argv):
  del argv
  import keras
  from sjft_tf.descriptors import histogram

  rng = np.random.default_rng(0)
  shape = (_BATCH_SIZE.value, _IMAGE_SIZE.value, _IMAGE_SIZE.value, 3)
  batch = rng.uniform(0, 255, shape).astype(np.float32)
  bank = _bank(_BANK.value)
  maps = [keras.ops.convert_to_numpy(m) for m in bank(batch)]
  lower, upper = (keras.ops.convert_to_numpy(v) for v in histogram.batch_ranges(maps))
  floor = histogram.zero_floors(lower, upper)
  counts = keras.ops.convert_to_numpy(
      histogram.batch_fine_counts(maps, lower, upper, zero_floor=floor))
  edges = histogram.equal_mass_edges(counts, lower, upper, _NUM_BINS.value)
  images = keras.Input(shape[1:])
  layer = histogram.HistogramLayer(edges, floor)
  model = keras.Model(images, layer(bank(images)))
  device_batch = keras.ops.convert_to_tensor(batch)
  for _ in range(2):
    keras.ops.convert_to_numpy(model.predict_on_batch(device_batch))
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    out = model.predict_on_batch(device_batch)
  keras.ops.convert_to_numpy(out)  # wait for the device
  seconds = time.perf_counter() - start
  device = "cpu"
  if keras.backend.backend() == "jax":
    import jax
    device = str(jax.devices()[0])
  print(f"backend {keras.backend.backend()}, device {device}; bank {_BANK.value}: "
        f"{edges.shape[0]} channels x {_NUM_BINS.value} bins = {out.shape[-1]} values, "
        f"batch {shape}, lookup cells {layer.lookup_cells} (M={layer._cell_keys.shape[-1]})")
  print(f"descriptors: {_STEPS.value * shape[0] / seconds:.1f} images/s")


if __name__ == "__main__":
  app.run(main)
