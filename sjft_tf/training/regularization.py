"""L2-SP (X. Li, Y. Grandvalet and F. Davoine, "Explicit Inductive Bias for Transfer
Learning with Convolutional Networks", ICML 2018): the strongest regulariser that uses
no source data, and the baseline a user would try instead of borrowing.

  Omega(w) = alpha / 2 * ||w_base - w_base^0||^2 + beta / 2 * ||w_heads||^2

w^0 are the pretrained weights (the starting point); the heads, fresh, get plain L2.
The paper uses it in place of weight decay (set the optimizer's weight_decay to 0), with
alpha = 0.01-0.1 and beta = 0.01. It is attached as Keras variable regularizers, so
`model.losses` carries it under model.fit, custom loops and the JAX backend alike, and
a sample of either domain pulls the same way. Works with or without a source head.
"""

import dataclasses
import re

import keras
import numpy as np
from keras import ops

from sjft_tf import bounds
from sjft_tf.training.optimization import HEAD_VARIABLES


@dataclasses.dataclass
class L2SPConfig:
  """Attributes:
    alpha: strength of the pull of the base's weights towards their starting values;
      0 turns L2-SP off.
    beta: plain L2 strength on the heads' weights (used only when alpha > 0).
  """
  alpha: float = bounds.field(0.0, lower=0.0)
  beta: float = bounds.field(0.01, lower=0.0)

  def __post_init__(self):
    bounds.check(self)


@keras.saving.register_keras_serializable(package="sjft_tf")
class StartingPointL2(keras.regularizers.Regularizer):
  """strength / 2 * ||w - anchor||^2 for one variable (anchor: its starting value)."""

  def __init__(self, strength: float, anchor):
    self.strength = float(strength)
    self.anchor = np.asarray(anchor, np.float32)

  def __call__(self, x):
    return 0.5 * self.strength * ops.sum(ops.square(x - ops.convert_to_tensor(self.anchor)))

  def get_config(self):
    return {"strength": self.strength, "anchor": self.anchor.tolist()}


@keras.saving.register_keras_serializable(package="sjft_tf")
class HalfL2(keras.regularizers.Regularizer):
  """strength / 2 * ||w||^2 (Keras' L2 has no 1/2)."""

  def __init__(self, strength: float):
    self.strength = float(strength)

  def __call__(self, x):
    return 0.5 * self.strength * ops.sum(ops.square(x))

  def get_config(self):
    return {"strength": self.strength}


def apply_l2sp(model: keras.Model, config: L2SPConfig) -> int:
  """Attaches L2-SP to every trainable variable of `model`, anchored at its current
  value: call it right after building the model from pretrained weights.

  Returns:
    The number of base variables pulled towards their starting point.
  """
  if config.alpha <= 0:
    return 0
  heads = re.compile(HEAD_VARIABLES)
  anchored = 0
  for variable in model.trainable_variables:
    if heads.search(variable.path):
      variable.regularizer = HalfL2(config.beta) if config.beta > 0 else None
    else:
      variable.regularizer = StartingPointL2(config.alpha, ops.convert_to_numpy(variable))
      anchored += 1
  return anchored
