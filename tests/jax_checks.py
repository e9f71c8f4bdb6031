"""Run under KERAS_BACKEND=jax by test_jax_backend.py (a process of its own: Keras picks
its backend at import): the histogram layer's counting methods against the NumPy
reference, and a CIFAR ResNet's outputs against TensorFlow's on the same weights.

  python tests/jax_checks.py MAPS.npz WEIGHTS.weights.h5 IMAGES_AND_LOGITS.npz
"""

import sys

import keras
import numpy as np

from sjft_tf.applications import cifar_resnet
from sjft_tf.descriptors import histogram, reference


def main(maps_path: str, weights_path: str, expected_path: str) -> None:
  assert keras.backend.backend() == "jax", keras.backend.backend()
  stored = np.load(maps_path)
  maps = [stored[f"map{i}"] for i in range(int(stored["count"]))]
  edges, floor = stored["edges"], stored["floor"]
  for method in histogram.COUNTING_METHODS:
    ours = np.asarray(histogram.HistogramLayer(edges, floor, method=method)(maps))
    for i in range(maps[0].shape[0]):
      expected = reference.histograms([m[i] for m in maps], edges, floor).astype(np.float32)
      np.testing.assert_array_equal(ours[i], expected, err_msg=method)
  print("histograms: every method equals the reference under jax")
  network = cifar_resnet.CifarResNet(8, classes=10, input_shape=(32, 32, 3), alpha=0.5)
  network.load_weights(weights_path)
  data = np.load(expected_path)
  logits = np.asarray(network(data["images"], training=False))
  np.testing.assert_allclose(logits, data["logits"], rtol=1e-4, atol=1e-4)
  print("cifar resnet: jax logits equal tensorflow's")


if __name__ == "__main__":
  main(*sys.argv[1:])
