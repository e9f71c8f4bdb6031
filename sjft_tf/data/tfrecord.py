"""The TFRecord example format shared by the ingest writer and the tf.data readers."""

import tensorflow as tf

# Feature keys; tests and later stages refer to these names, never to literals.
IMAGE_KEY = "image/encoded"
FORMAT_KEY = "image/format"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"
LABEL_KEY = "label"
CLASS_NAME_KEY = "class_name"
ID_KEY = "id"
DATASET_KEY = "dataset"

FEATURE_SPEC = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    FORMAT_KEY: tf.io.FixedLenFeature([], tf.string),
    HEIGHT_KEY: tf.io.FixedLenFeature([], tf.int64),
    WIDTH_KEY: tf.io.FixedLenFeature([], tf.int64),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    CLASS_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
    ID_KEY: tf.io.FixedLenFeature([], tf.string),
    DATASET_KEY: tf.io.FixedLenFeature([], tf.string),
}


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def serialize_example(*, encoded: bytes, image_format: str, height: int, width: int,
                      label: int, class_name: str, example_id: str,
                      dataset: str) -> bytes:
  """Builds one serialised `tf.train.Example` in the format of FEATURE_SPEC."""
  features = {
      IMAGE_KEY: _bytes(encoded),
      FORMAT_KEY: _bytes(image_format.encode()),
      HEIGHT_KEY: _int64(height),
      WIDTH_KEY: _int64(width),
      LABEL_KEY: _int64(label),
      CLASS_NAME_KEY: _bytes(class_name.encode()),
      ID_KEY: _bytes(example_id.encode()),
      DATASET_KEY: _bytes(dataset.encode()),
  }
  return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
      deterministic=True)  # map order fixed: identical bytes in every process


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
  """Parses one serialised example into the tensors of FEATURE_SPEC."""
  return tf.io.parse_single_example(serialized, FEATURE_SPEC)
