"""Filter banks and histograms against the NumPy/OpenCV reference, on real images."""

import math
import os

import cv2
import keras
import numpy as np
import pytest

from sjft_tf import applications
from sjft_tf.data import archives, synthetic
from sjft_tf.data.images import decode_rgb
from sjft_tf.descriptors import gabor, histogram, learned, reference

SIZE = 96


@pytest.fixture(scope="module")
def real_images(test_cache_dir, tmp_path_factory) -> np.ndarray:
  """float32 [4, 96, 96, 3]: Flowers 102 photos from ../shared, else demo textures."""
  root = archives.shared_dir()
  if root is not None:
    cache = archives.extract(os.path.join(root, "data/flowers102/flowers102_96px.tar.gz"),
                             os.path.join(test_cache_dir, "flowers"),
                             lambda n: "/train/001_" in n or "/train/051_" in n,
                             tag="descriptor-images")
    folder = os.path.join(cache, "flowers102", "train")
    files = sorted(os.path.join(folder, c, f) for c in os.listdir(folder)
                   for f in os.listdir(os.path.join(folder, c)))[::5][:4]
  else:
    out = tmp_path_factory.mktemp("demo")
    synthetic.generate(str(out), synthetic.SyntheticConfig(
        image_size=SIZE, source_images_per_class=1, num_target_classes=2,
        target_split_sizes={"train": 2}))
    folder = out / "target" / "train"
    files = sorted(str(folder / c / f) for c in os.listdir(folder)
                   for f in os.listdir(folder / c))[:4]
  images = []
  for path in files:
    with open(path, "rb") as f:
      image = decode_rgb(f.read())
    top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
    images.append(image[top:top + SIZE, left:left + SIZE])
  return np.stack(images).astype(np.float32)


def test_gabor_kernels_are_opencvs(tmp_path):
  params = gabor.GaborParams()
  kernels = gabor.gabor_kernels(params)
  assert kernels.shape == (11, 11, 1, 48 // 4)
  for i in range(params.num_orientations):
    theta = math.pi * i / params.num_orientations
    real = cv2.getGaborKernel((11, 11), 0.56 * 4, theta, 4.0, 0.5, 0, ktype=cv2.CV_64F)
    imaginary = cv2.getGaborKernel((11, 11), 0.56 * 4, theta, 4.0, 0.5, -math.pi / 2,
                                   ktype=cv2.CV_64F)
    np.testing.assert_allclose(kernels[..., 0, 2 * i], real - real.mean(), atol=1e-6)
    np.testing.assert_allclose(kernels[..., 0, 2 * i + 1], imaginary, atol=1e-6)


def test_gabor_layer_matches_reference_responses(real_images):
  layer_maps = [np.asarray(m) for m in gabor.GaborBank()(real_images)]
  assert [m.shape[1:] for m in layer_maps] == [(96, 96, 12), (48, 48, 12), (24, 24, 12),
                                               (12, 12, 12)]
  for i, image in enumerate(real_images):
    for ours, ref in zip(layer_maps, reference.gabor_responses(image)):
      channel_range = ref.max(axis=(0, 1)) - ref.min(axis=(0, 1))
      error = np.abs(ours[i] - ref).max(axis=(0, 1))
      assert np.all(error <= 1e-4 * channel_range), error / channel_range


def _fitted_edges(response_maps, bins):
  """(edges [C, B-1], zero_floor [C]) fitted on the maps."""
  lower, upper = (np.asarray(v) for v in histogram.batch_ranges(response_maps))
  counts = np.asarray(histogram.batch_fine_counts(response_maps, lower, upper))
  return (histogram.equal_mass_edges(counts, lower, upper, bins),
          histogram.zero_floors(lower, upper))


def test_histograms_of_identical_responses_match_exactly(real_images):
  responses = [reference.gabor_responses(image) for image in real_images]
  maps = [np.stack([r[s] for r in responses]).astype(np.float32) for s in range(4)]
  edges, floor = _fitted_edges(maps, 32)
  ours = np.asarray(histogram.HistogramLayer(edges, floor)(maps))
  for i in range(len(real_images)):
    expected = reference.histograms([m[i] for m in maps], edges, floor)
    np.testing.assert_array_equal(ours[i], expected.astype(np.float32))


def _edge_cases(maps, edges):
  """Real maps with the hard values written in: responses exactly on edges (ties),
  below the zero floor, -0.0, and a constant map."""
  maps = [m.copy() for m in maps]
  channels = maps[0].shape[-1]
  maps[0][0, :2, :, :] = edges[:channels, 10]  # every pixel of two rows on an edge
  maps[0][1, :4, :4, :] = -0.0
  maps[0][1, 4:8, :4, :] = 1e-12  # under any floor of real responses
  maps[1][2] = maps[1][2, 0, 0]  # one value everywhere
  return maps


@pytest.mark.parametrize("method", histogram.COUNTING_METHODS)
def test_every_counting_method_equals_the_reference_exactly(real_images, method):
  maps = [np.asarray(m) for m in gabor.GaborBank()(real_images)]
  edges, floor = _fitted_edges(maps, 32)
  edges[:, 5] = np.float32(1e-41)  # a subnormal edge (a CPU may flush it to zero)
  edges = np.maximum.accumulate(np.maximum(edges, edges[:, :1]), axis=1)
  maps = _edge_cases(maps, edges)
  layer = histogram.HistogramLayer(edges, floor, method=method)
  assert layer.counting == method
  ours = np.asarray(layer(maps))
  pixels = np.repeat([m.shape[1] * m.shape[2] for m in maps], [m.shape[-1] for m in maps])
  pixels = np.repeat(pixels, 32)
  for i in range(len(real_images)):
    expected = reference.histograms([m[i] for m in maps], edges, floor)
    np.testing.assert_array_equal(ours[i], expected.astype(np.float32))
  if keras.backend.backend() == "tensorflow":  # XLA, as the descriptor stage runs it
    import tensorflow as tf
    compiled = np.asarray(tf.function(layer, jit_compile=True)(maps))
    # The same counts; XLA divides by the pixel count as a product with its reciprocal,
    # so a fraction can differ from the correctly rounded one by one float32 ulp.
    np.testing.assert_array_equal(np.round(compiled * pixels), np.round(ours * pixels))
    np.testing.assert_array_max_ulp(compiled, ours, maxulp=1)


def test_the_counting_method_is_decided_by_the_device():
  assert histogram.counting_method("cpu") == "lookup"
  assert histogram.counting_method("gpu") == histogram.counting_method("tpu") == "compare"
  edges = np.array([[0.0, 1.0, 2.0]], np.float32)
  assert histogram.HistogramLayer(edges).counting == histogram.counting_method(
      histogram.default_device_kind())
  layer = histogram.HistogramLayer.from_config(histogram.HistogramLayer(
      edges, method="onehot").get_config())
  assert layer.counting == "onehot"
  with pytest.raises(ValueError, match="unknown counting method 'sort'"):
    histogram.HistogramLayer(edges, method="sort")


def test_lookup_grid_size_does_not_change_the_result(real_images):
  maps = [np.asarray(m) for m in gabor.GaborBank()(real_images)]
  edges, floor = _fitted_edges(maps, 32)
  coarse = histogram.HistogramLayer(edges, floor, lookup_cells=16)(maps)
  fine = histogram.HistogramLayer(edges, floor, lookup_cells=8192)(maps)
  np.testing.assert_array_equal(np.asarray(coarse), np.asarray(fine))


def test_end_to_end_gabor_descriptor_matches_reference(real_images):
  bank = gabor.GaborBank()
  maps = [np.asarray(m) for m in bank(real_images)]
  edges, floor = _fitted_edges(maps, 32)
  ours = np.asarray(histogram.HistogramLayer(edges, floor)(bank(real_images)))
  for i, image in enumerate(real_images):
    expected = reference.gabor_descriptor(image, edges, floor)
    per_channel_l1 = np.abs(ours[i] - expected).reshape(48, 32).sum(axis=1)
    # Responses within float rounding of an edge may land on either side of it; each
    # such tie moves 2 / pixels of its map. The 1e-3 bound holds for large maps; these
    # are 96 px down to 12 px, so up to two ties a channel are allowed.
    pixels = np.repeat([96 * 96, 48 * 48, 24 * 24, 12 * 12], 12)
    assert np.all(per_channel_l1 <= np.maximum(1e-3, 4 / pixels) + 1e-6), per_channel_l1
    np.testing.assert_allclose(ours[i].reshape(48, 32).sum(axis=1), 1.0, atol=1e-6)


def test_bins_hold_equal_mass_on_the_fitting_data(real_images):
  bins = 32
  maps = [np.asarray(m) for m in gabor.GaborBank()(real_images)]
  lower, upper = (np.asarray(v) for v in histogram.batch_ranges(maps))
  fine = np.asarray(histogram.batch_fine_counts(maps, lower, upper)).astype(np.float64)
  edges = histogram.equal_mass_edges(fine, lower, upper, bins)
  floor = histogram.zero_floors(lower, upper)
  # A point mass (flat image regions respond identically) cannot be split by an edge:
  # the largest single cell's share of each channel bounds what equal mass can reach.
  point_mass = fine.max(axis=1) / fine.sum(axis=1)
  shares = np.asarray(histogram.HistogramLayer(edges, floor)(maps)).reshape(4, 48, bins).mean(0)
  deviation = np.abs(shares - 1 / bins)
  # Tolerance: 10% of 1/B, plus the channel's point mass.
  assert np.all(deviation <= 0.1 / bins + point_mass[:, None])
  smooth = point_mass < 0.1 / bins
  assert smooth.sum() >= 12  # flat sky and petals make point masses in coarse levels
  assert deviation[smooth].max() < 0.1 / bins


def test_layer_weights_and_edges_survive_serialisation(real_images, tmp_path):
  bank = gabor.GaborBank(num_scales=3, wavelength=3.0)
  maps = [np.asarray(m) for m in bank(real_images)]
  edges, floor = _fitted_edges(maps, 16)
  images = keras.Input((SIZE, SIZE, 3))
  model = keras.Model(images, histogram.HistogramLayer(edges, floor)(bank(images)))
  path = str(tmp_path / "descriptor.keras")
  model.save(path)
  reloaded = keras.saving.load_model(path)
  np.testing.assert_array_equal(np.asarray(model(real_images)),
                                np.asarray(reloaded(real_images)))
  again = gabor.GaborBank.from_config(bank.get_config())
  assert again.params == bank.params


def _tiny_network():
  images = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(images)
  x = keras.layers.MaxPooling2D(2, name="pool")(x)
  x = keras.layers.Conv2D(5, 3, name="c2")(x)
  x = keras.layers.BatchNormalization(name="c2_bn")(x)
  x = keras.layers.ReLU(name="c2_relu")(x)
  model = keras.Model(images, x)
  rng = np.random.default_rng(0)
  model.get_layer("c1").set_weights([rng.normal(0, 0.02, (3, 3, 3, 4)),
                                     rng.normal(0, 1, 4)])
  model.get_layer("c2").set_weights([rng.normal(0, 0.2, (3, 3, 4, 5)), rng.normal(0, 1, 5)])
  model.get_layer("c2_bn").set_weights([rng.uniform(0.5, 2, 5), rng.normal(0, 1, 5),
                                        rng.normal(0, 5, 5), rng.uniform(1, 30, 5)])
  return model


def _correlate_valid(image, kernel):
  """Per output channel: sum over input channels of cv2.filter2D, valid region."""
  half = kernel.shape[0] // 2
  out = np.stack([sum(cv2.filter2D(image[..., i].astype(np.float64), cv2.CV_64F,
                                   kernel[:, :, i, o].astype(np.float64))
                      for i in range(image.shape[-1]))
                  for o in range(kernel.shape[-1])], -1)
  return out[half:-half, half:-half]


def test_learned_bank_takes_responses_before_the_activation(real_images):
  network = _tiny_network()
  bank = learned.LearnedKernelBank(learned.preactivation_extractor(network, ["c1", "c2"]),
                                   "none", ["c1", "c2"])
  assert bank.channel_groups() == [("c1", 4), ("c2", 5)]
  first, second = (np.asarray(m) for m in bank(real_images[:1]))
  kernel1, bias1 = network.get_layer("c1").get_weights()
  expected1 = _correlate_valid(real_images[0], kernel1) + bias1
  np.testing.assert_allclose(first[0], expected1, rtol=1e-4, atol=1e-3)
  assert first.min() < 0  # before the ReLU
  # The second layer sees the first through the network's own ReLU and pooling.
  pooled = np.maximum(expected1, 0)
  h, w = pooled.shape[0] // 2 * 2, pooled.shape[1] // 2 * 2
  pooled = pooled[:h, :w].reshape(h // 2, 2, w // 2, 2, 4).max(axis=(1, 3))
  kernel2, bias2 = network.get_layer("c2").get_weights()
  gamma, beta, mean, variance = network.get_layer("c2_bn").get_weights()
  conv2 = _correlate_valid(pooled, kernel2) + bias2
  expected2 = (conv2 - mean) / np.sqrt(variance + 1e-3) * gamma + beta
  np.testing.assert_allclose(second[0], expected2, rtol=1e-3, atol=1e-2)
  assert second.min() < 0


def test_learned_bank_on_real_mobilenet_weights(real_images, shared_data_dir):
  weights = os.path.join(os.path.dirname(shared_data_dir), "weights",
                         "mobilenet_v1_0.25_imagenet", "mobilenet_2_5_224_tf_no_top.h5")
  bank = learned.application_bank("MobileNet", ["conv1", "conv_pw_1"], weights, alpha=0.25)
  conv1, conv_pw_1 = (np.asarray(m) for m in bank(real_images))
  assert conv1.shape == (4, 48, 48, 8) and conv_pw_1.shape == (4, 48, 48, 16)
  network = keras.applications.MobileNet(include_top=False, weights=weights, alpha=0.25,
                                         input_shape=(None, None, 3))
  relu = keras.Model(network.input, [network.get_layer("conv1_relu").output,
                                     network.get_layer("conv_pw_1_relu").output])
  after1, after2 = (np.asarray(m) for m in relu(real_images / 127.5 - 1.0))
  np.testing.assert_allclose(np.clip(conv1, 0, 6), after1, atol=1e-5)
  np.testing.assert_allclose(np.clip(conv_pw_1, 0, 6), after2, atol=1e-5)
  assert conv1.min() < 0 and conv_pw_1.min() < 0
  again = learned.LearnedKernelBank.from_config(bank.get_config())
  again.set_weights(bank.get_weights())
  np.testing.assert_array_equal(np.asarray(again(real_images)[1]), conv_pw_1)


def test_fused_activation_is_removed_not_reapplied():
  network = keras.applications.VGG16(include_top=False, weights=None,
                                     input_shape=(None, None, 3))
  bank = learned.application_bank("VGG16", ["block1_conv1"])
  bank.set_weights([w for w in network.get_layer("block1_conv1").get_weights()])
  images = np.random.default_rng(1).uniform(0, 255, (1, 20, 20, 3)).astype(np.float32)
  response = np.asarray(bank(images)[0])
  activated = keras.Model(network.input, network.get_layer("block1_conv1").output)
  after = np.asarray(activated(applications.preprocess(images, "caffe")))
  np.testing.assert_allclose(np.maximum(response, 0), after, atol=1e-4)
  assert response.min() < 0


def test_bad_edges_and_modes_are_refused():
  with pytest.raises(ValueError, match="non-decreasing"):
    histogram.HistogramLayer(np.array([[0.0, 2.0, 1.0]]))
  with pytest.raises(ValueError, match="unknown preprocessing mode 'bgr'"):
    applications.preprocess(np.zeros((1, 1, 1, 3)), "bgr")


def test_gabor_bank_refuses_images_too_small_for_its_pyramid():
  bank = gabor.GaborBank()
  assert bank.min_image_size() == 48  # (11 // 2 + 1) * 2 ** 3
  assert [m.shape[1] for m in bank(np.zeros((1, 48, 48, 3), np.float32))] == [48, 24, 12, 6]
  with pytest.raises(ValueError, match="32-px images are too small.*needs 48 px"):
    bank(np.zeros((1, 32, 32, 3), np.float32))
