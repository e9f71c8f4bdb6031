"""Classification metrics from predicted probabilities: pure NumPy."""

import base64

import numpy as np

from sjft_tf import errors


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [classes, classes]: row = true class, column = predicted class."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
  return matrix


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           class_names) -> dict:
  """Top-1, mean per-class accuracy, per-class accuracies and the confusion matrix.

  Args:
    labels: int [n] true labels.
    probabilities: float [n, classes].
    class_names: names of the classes, label = index.
  Returns:
    {"images", "top1", "mean_per_class_accuracy", "per_class": {name: {"images",
    "accuracy"}}, "confusion_matrix": [[int]], "correct": pack_correct(whether each
    image, in the order given, is right)}; a class without images has accuracy None and
    is left out of the mean.
  """
  labels = np.asarray(labels, np.int64)
  predicted = np.argmax(probabilities, axis=1)
  matrix = confusion_matrix(labels, predicted, len(class_names))
  per_class_images = matrix.sum(axis=1)
  present = per_class_images > 0
  accuracy = np.where(present, np.diag(matrix) / np.maximum(per_class_images, 1), np.nan)
  return {
      "images": int(len(labels)),
      "top1": float(np.trace(matrix) / max(len(labels), 1)),
      "mean_per_class_accuracy": float(np.nanmean(accuracy)) if present.any() else 0.0,
      "per_class": {name: {"images": int(count),
                           "accuracy": None if np.isnan(a) else float(a)}
                    for name, count, a in zip(class_names, per_class_images, accuracy)},
      "confusion_matrix": matrix.tolist(),
      "correct": pack_correct(predicted == labels),
  }


def pack_correct(correct: np.ndarray) -> str:
  """bool [n] -> base64 of its packed bits (results.json's per-image record)."""
  return base64.b64encode(np.packbits(np.asarray(correct, bool)).tobytes()).decode("ascii")


def unpack_correct(text: str, images: int) -> np.ndarray:
  """pack_correct's inverse: bool [images]."""
  bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))
  if len(bits) < images or bits[images:].any():
    raise errors.InputError(f"a per-image record of {len(bits)} bits does not hold {images} images")
  return bits[:images].astype(bool)
