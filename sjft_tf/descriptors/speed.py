"""Images per second of the histogram layer's counting formulations, alone and after a
filter bank, under whichever Keras backend and device this process has.

Shared by `sjft-benchmark-descriptors --histogram_methods` (CPU, TensorFlow or JAX)
and `tools/gpu_check.py` (a GPU under JAX), so both time the same thing: random
images [batch, size, size, 3] in [0, 255], edges fitted on them (B bins), then each
method's compiled model (Keras' predict_on_batch: XLA under JAX, tf.function under
TensorFlow) on the same device-resident batch, after two warm-up calls.
"""

import dataclasses
import time

import keras
import numpy as np

from sjft_tf import errors
from sjft_tf.descriptors import gabor, histogram, learned

# The figure to read GPU rates against (../shared/DEVICE.md): the AlexNet-shaped bank
# with 100-bin histograms, keras.ops under JAX, one H100.
ANCHOR_IMAGES_PER_S = 41_500


@dataclasses.dataclass(frozen=True)
class MethodRate:
  """One method's rates, images/s: the histograms on precomputed maps, and bank +
  histograms end to end."""
  method: str
  histogram_images_per_s: float
  descriptor_images_per_s: float


def alexnet_bank(dtype_policy: str = "float32") -> learned.LearnedKernelBank:
  """The paper's bank's shape, random weights: conv1 96 x 11x11 / 4, max pool 3 / 2,
  conv2 256 x 5x5 (352 channels; 55 x 55 and 27 x 27 maps at 224 px)."""
  from sjft_tf import precision  # pylint: disable=g-import-not-at-top
  with precision.dtype_policy(dtype_policy):
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(images)
    x = keras.layers.MaxPooling2D(3, 2)(x)
    x = keras.layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    network = keras.Model(images, x)
    return learned.LearnedKernelBank(
        learned.preactivation_extractor(network, ["conv1", "conv2"]), "caffe",
        ["conv1", "conv2"])


def bank_by_name(name: str):
  """"alexnet", "lite0" (EfficientNet-Lite0 stem_conv + block1a_project_conv, random
  weights), "mobilenet" (MobileNet 0.25 conv1 + conv_pw_1, random) or "gabor"."""
  if name == "alexnet":
    return alexnet_bank()
  if name == "lite0":
    return learned.application_bank("EfficientNetLite0", ["stem_conv", "block1a_project_conv"],
                                    None)
  if name == "mobilenet":
    return learned.application_bank("MobileNet", ["conv1", "conv_pw_1"], None, alpha=0.25)
  if name == "gabor":
    return gabor.GaborBank()
  raise errors.InputError(f"unknown bank {name!r} (alexnet, lite0, mobilenet, gabor)")


def _synchronised(value) -> np.ndarray:
  return keras.ops.convert_to_numpy(value)  # waits for an asynchronous device


def _rate(model, inputs, images: int, steps: int) -> float:
  for _ in range(2):  # tracing / compilation
    _synchronised(model.predict_on_batch(inputs))
  started = time.perf_counter()
  for _ in range(steps):
    out = model.predict_on_batch(inputs)
  _synchronised(out)
  return images * steps / (time.perf_counter() - started)


def method_rates(bank, size: int, batch: int, steps: int, methods=histogram.COUNTING_METHODS,
                 num_bins: int = 100, seed: int = 0) -> tuple[list[MethodRate], dict]:
  """Times every counting method on one bank.

  Returns:
    ([MethodRate per method], {"values": descriptor length, "channels": C, "batch",
    "size", "agree": whether every method gave the lookup's counts on the batch}).
  """
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
  maps = [_synchronised(keras.ops.cast(m, "float32")) for m in bank(images)]
  lower, upper = (_synchronised(v) for v in histogram.batch_ranges(maps))
  floor = histogram.zero_floors(lower, upper)
  counts = _synchronised(histogram.batch_fine_counts(maps, lower, upper, zero_floor=floor))
  edges = histogram.equal_mass_edges(counts, lower, upper, num_bins)
  device_images = keras.ops.convert_to_tensor(images)
  device_maps = [keras.ops.convert_to_tensor(m) for m in maps]
  rates, outputs = [], {}
  for method in methods:
    layer = histogram.HistogramLayer(edges, floor, method=method, dtype="float32")
    map_inputs = [keras.Input(m.shape[1:]) for m in maps]
    alone = keras.Model(map_inputs, layer(map_inputs))
    image_input = keras.Input((size, size, 3))
    whole = keras.Model(image_input, histogram.HistogramLayer(
        edges, floor, method=method, dtype="float32")(bank(image_input)))
    outputs[method] = _synchronised(alone.predict_on_batch(device_maps))
    rates.append(MethodRate(method, _rate(alone, device_maps, batch, steps),
                            _rate(whole, device_images, batch, steps)))
  pixels = np.repeat([m.shape[1] * m.shape[2] for m in maps],
                     [m.shape[-1] * num_bins for m in maps])
  first = np.round(next(iter(outputs.values())) * pixels)
  agree = all(np.array_equal(np.round(o * pixels), first) for o in outputs.values())
  return rates, {"values": int(edges.shape[0] * num_bins), "channels": int(edges.shape[0]),
                 "batch": batch, "size": size, "agree": agree}


def format_rates(name: str, rates: list[MethodRate], info: dict) -> list[str]:
  """Lines of a table: each method's rates and its ratios to the lookup layer (today's)
  and to the anchor."""
  baseline = next((r for r in rates if r.method == "lookup"), rates[0])
  lines = [f"{name}: {info['channels']} channels, {info['values']} values, batch "
           f"{info['batch']} at {info['size']} px; every method's counts equal: "
           f"{info['agree']}",
           f"  {'method':8s} {'hist img/s':>11s} {'x lookup':>9s} {'x anchor':>9s} "
           f"{'bank+hist img/s':>16s} {'x lookup':>9s} {'x anchor':>9s}"]
  for rate in rates:
    lines.append(
        f"  {rate.method:8s} {rate.histogram_images_per_s:11.1f} "
        f"{rate.histogram_images_per_s / baseline.histogram_images_per_s:8.2f}x "
        f"{rate.histogram_images_per_s / ANCHOR_IMAGES_PER_S:8.3f}x "
        f"{rate.descriptor_images_per_s:16.1f} "
        f"{rate.descriptor_images_per_s / baseline.descriptor_images_per_s:8.2f}x "
        f"{rate.descriptor_images_per_s / ANCHOR_IMAGES_PER_S:8.3f}x")
  return lines
