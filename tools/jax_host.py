"""What the scripts for a GPU host without TensorFlow share (gpu_check, gpu_study,
benchmark_training_jax)."""


def device() -> str:
  """The accelerators Keras runs on: JAX's device kinds (e.g. "NVIDIA H100 80GB HBM3"),
  or the backend's name under another backend."""
  import keras  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    return ", ".join(sorted({d.device_kind for d in jax.devices()}))
  return keras.backend.backend()
