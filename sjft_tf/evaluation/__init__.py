"""Evaluation of a trained model on a split of the target: accuracy, per class, multi-crop."""
