"""sjft_tf: selective joint fine-tuning (Ge & Yu, CVPR 2017) for Keras and TensorFlow.

Stages, one sub-package each, data flowing one way:
  data         image folders / TFDS / CSV -> sharded TFRecords + dataset spec -> tf.data
  descriptors  filter-bank layers -> equal-mass histograms -> descriptor shards
  selection    nearest sources (exact or ScaNN + exact re-rank) -> rounds of pools
  training     two-head model, paired input, rounds, tf.distribute drivers
  evaluation   top-1, mean per class, ten crops, confusion matrix
  export       versioned SavedModel for TF Serving
  experiments  the paper's ablation table
  cli          the command-line tools (console scripts sjft-*), thin adapters
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notices) hidden unless asked
# for (TF_CPP_MIN_LOG_LEVEL=0); it takes effect when TensorFlow is imported after us.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The Keras objects a saved model.keras refers to (the input scaling layer, the
# per-head accuracy, the optimizer with a head multiplier) are registered on import,
# so keras.saving.load_model works in a user's script after `import sjft_tf`.
from sjft_tf import applications as _applications  # noqa: E402,F401
from sjft_tf.training import losses as _losses  # noqa: E402,F401
from sjft_tf.training import optimization as _optimization  # noqa: E402,F401
