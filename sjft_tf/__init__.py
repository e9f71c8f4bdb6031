"""sjft_tf: selective joint fine-tuning (Ge & Yu, CVPR 2017) for Keras and TensorFlow.

Stages, one sub-package each, data flowing one way:
  data         image folders / TFDS / CSV -> sharded TFRecords + dataset spec -> tf.data
  descriptors  filter-bank layers -> equal-mass histograms -> descriptor shards
  selection    nearest sources (exact or ScaNN + exact re-rank) -> rounds of pools
  training     two-head model, paired input, rounds, tf.distribute drivers
  evaluation   top-1, mean per class, ten crops, confusion matrix
  export       versioned SavedModel for TF Serving
  experiments  the paper's ablation table
"""

__version__ = "0.1.0"
