"""sjft_tf: selective joint fine-tuning (Ge & Yu, CVPR 2017) for Keras and TensorFlow.

Stages, one sub-package each, data flowing one way:
  data        image folders / TFDS / CSV -> sharded TFRecords + dataset spec -> tf.data
  (later)     descriptors -> selection -> training -> export
"""

__version__ = "0.1.0"
