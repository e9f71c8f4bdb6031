"""Iterative selection for hard target samples (Ge & Yu 2017, section 3.3): the rule
that raises a target image's level after a round of joint fine-tuning.

A pure function of predictions, no TensorFlow: misclassified -> level + 4; correct but
uncertain (normalised prediction entropy above a threshold) -> level + 2; else the
same; capped. A target image with level L draws its source partners from its first
K0 * L neighbours and is sampled L times as often.
"""

import dataclasses

import numpy as np

from sjft_tf import bounds


@dataclasses.dataclass(frozen=True)
class LevelRule:
  """The update rule's parameters.

  Attributes:
    misclassified_step: added to a misclassified image's level (paper: 4).
    uncertain_step: added to a correct but uncertain image's level (paper: 2).
    entropy_threshold: "uncertain" means entropy / log(num_classes) above this. The
      paper publishes no value; 0.5 is OURS: the prediction is spread over about
      num_classes ** 0.5 classes or more (e.g. 10 of 102), clearly unsure.
    max_level: levels are capped here (the authors' code: 10).
  """
  misclassified_step: int = bounds.field(4, lower=0)
  uncertain_step: int = bounds.field(2, lower=0)
  entropy_threshold: float = bounds.field(0.5, lower=0.0)
  max_level: int = dataclasses.field(default=10, metadata={"flag": {"lower_bound": 1}})

  def __post_init__(self):
    bounds.check(self)


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
  """float [n]: entropy of each row of probabilities [n, classes] / log(classes)."""
  p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
  return -(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])


def update_levels(levels: np.ndarray, probabilities: np.ndarray, labels: np.ndarray,
                  rule: LevelRule = LevelRule()) -> np.ndarray:
  """The next round's levels.

  Args:
    levels: int [n] current levels (>= 1).
    probabilities: float [n, classes] predicted target-class probabilities.
    labels: int [n] true target labels.
  Returns:
    int32 [n] new levels.
  """
  levels = np.asarray(levels, np.int64)
  wrong = np.argmax(probabilities, axis=1) != np.asarray(labels)
  uncertain = ~wrong & (normalised_entropy(probabilities) > rule.entropy_threshold)
  steps = np.where(wrong, rule.misclassified_step, np.where(uncertain, rule.uncertain_step, 0))
  return np.minimum(levels + steps, rule.max_level).astype(np.int32)
