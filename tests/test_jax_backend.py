"""The Keras layers and models under the JAX backend (how they run on the GPU host),
on this machine's CPU: the same numbers as under TensorFlow and the NumPy reference."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf.applications import cifar_resnet
from sjft_tf.descriptors import gabor

from test_descriptors import _edge_cases, _fitted_edges, real_images  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (requirements-test.txt installs it)")
def test_histograms_and_the_cifar_resnet_agree_under_jax(real_images, tmp_path):  # noqa: F811
  maps = [np.asarray(m) for m in gabor.GaborBank()(real_images)]
  edges, floor = _fitted_edges(maps, 32)
  maps = _edge_cases(maps, edges)
  np.savez(tmp_path / "maps.npz", count=len(maps), edges=edges, floor=floor,
           **{f"map{i}": m for i, m in enumerate(maps)})
  network = cifar_resnet.CifarResNet(8, classes=10, input_shape=(32, 32, 3), alpha=0.5)
  images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32) / 127.5 - 1
  np.savez(tmp_path / "logits.npz", images=images,
           logits=np.asarray(network(images, training=False)))
  network.save_weights(str(tmp_path / "net.weights.h5"))
  done = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "jax_checks.py"), str(tmp_path / "maps.npz"),
       str(tmp_path / "net.weights.h5"), str(tmp_path / "logits.npz")],
      cwd=REPO, env=dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "every method equals the reference under jax" in done.stdout
  assert "jax logits equal tensorflow's" in done.stdout
