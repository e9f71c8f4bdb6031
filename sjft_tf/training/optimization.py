"""SGD with momentum and the learning-rate schedules of the paper (section 3.4).

Every count here is in batches: model.fit steps. With gradient accumulation the
weights change every `accumulation_steps` batches, and the schedule still counts
batches (Keras schedules read the optimizer's batch counter).
"""

import dataclasses
import re

import keras
from keras import ops

from sjft_tf import bounds, errors

# Variables of the heads (Keras paths "<layer>/<weight>"; see model.py).
HEAD_VARIABLES = r"^(target|source)/"


@dataclasses.dataclass
class OptimizerConfig:
  """The optimiser and its schedule.

  Attributes:
    learning_rate: the base learning rate (paper: 0.01).
    momentum: SGD momentum (paper: 0.9).
    weight_decay: Keras' decoupled decay, w -= learning_rate * weight_decay * w at
      every update (paper: 1e-4, as Caffe's L2 term, which passes through momentum
      and so decays about 1 / (1 - momentum) = 10x more in steady state).
    schedule: "cosine" (to 0 at the last batch) or "step" (multiply by decay_factor
      every decay_every_steps batches; the paper: 0.1 every 2,400-5,000 updates).
    decay_every_steps: the step schedule's interval, in batches.
    decay_factor: the step schedule's factor.
    warmup_steps: linear warm-up from 0 over this many batches (cosine only).
    accumulation_steps: average the gradients of this many batches per update (1: no
      accumulation; paper: 10 batches of 20 images, 200 images an update).
    head_learning_rate_multiplier: the heads learn at this multiple of the schedule's
      rate (common fine-tuning practice for fresh heads: 10; Liu et al. 2022 use 10
      for joint training). 1: one rate for every weight, as the paper.
  """
  learning_rate: float = bounds.field(0.01, lower=0.0)
  momentum: float = bounds.field(0.9, lower=0.0, upper=1.0)
  weight_decay: float = bounds.field(1e-4, lower=0.0)
  schedule: str = dataclasses.field(default="cosine",
                                    metadata={"flag": {"enum_values": ["cosine", "step"]}})
  decay_every_steps: int = bounds.field(0, lower=0)
  decay_factor: float = bounds.field(0.1, lower=0.0)
  warmup_steps: int = bounds.field(0, lower=0)
  accumulation_steps: int = dataclasses.field(default=1, metadata={"flag": {"lower_bound": 1}})
  head_learning_rate_multiplier: float = bounds.field(1.0, lower=0.0)

  def __post_init__(self):
    bounds.check(self)


@keras.saving.register_keras_serializable(package="sjft_tf")
class MultiplierSGD(keras.optimizers.SGD):
  """SGD whose variables matching `pattern` learn at `multiplier` x the learning rate.

  The gradients of those variables are multiplied before the update: for SGD with
  (non-Nesterov) momentum that is exactly a larger learning rate, since the momentum
  buffer is linear in the gradients. Decoupled weight decay keeps the base rate.
  """

  def __init__(self, multiplier: float = 1.0, pattern: str = HEAD_VARIABLES, **kwargs):
    super().__init__(**kwargs)
    self.multiplier = float(multiplier)
    self.pattern = pattern

  def apply(self, grads, trainable_variables=None):
    variables = (self._trainable_variables if trainable_variables is None
                 else list(trainable_variables))
    matches = re.compile(self.pattern)
    grads = [g if g is None or not matches.search(v.path) else ops.multiply(g, self.multiplier)
             for g, v in zip(grads, variables)]
    return super().apply(grads, trainable_variables)

  def get_config(self):
    return {**super().get_config(), "multiplier": self.multiplier, "pattern": self.pattern}


def step_schedule_boundaries(total_steps: int, decay_every_steps: int) -> list[int]:
  """Batches at which the step schedule decays: every decay_every_steps, before the end."""
  if decay_every_steps <= 0:
    raise errors.InputError("the step schedule needs decay_every_steps > 0")
  return list(range(decay_every_steps, total_steps, decay_every_steps))


def learning_rate_schedule(config: OptimizerConfig, total_steps: int):
  """A keras LearningRateSchedule over `total_steps` batches."""
  if config.schedule == "cosine":
    if config.warmup_steps:
      return keras.optimizers.schedules.CosineDecay(
          0.0, max(total_steps - config.warmup_steps, 1), warmup_target=config.learning_rate,
          warmup_steps=config.warmup_steps)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, max(total_steps, 1))
  if config.schedule == "step":
    boundaries = step_schedule_boundaries(total_steps, config.decay_every_steps)
    values = [config.learning_rate * config.decay_factor ** i
              for i in range(len(boundaries) + 1)]
    if not boundaries:
      return keras.optimizers.schedules.PiecewiseConstantDecay([total_steps], values * 2)
    # Keras keeps values[i] while batch <= boundaries[i]: shift so batch b decays.
    return keras.optimizers.schedules.PiecewiseConstantDecay([b - 1 for b in boundaries],
                                                             values)
  raise errors.InputError(f"unknown schedule {config.schedule!r} (cosine, step)")


def make_optimizer(config: OptimizerConfig, total_steps: int) -> keras.optimizers.SGD:
  """SGD with momentum, weight decay, the schedule and optional gradient accumulation."""
  if config.accumulation_steps < 1:
    raise errors.InputError(f"accumulation_steps must be >= 1, got {config.accumulation_steps}")
  return MultiplierSGD(
      multiplier=config.head_learning_rate_multiplier,
      learning_rate=learning_rate_schedule(config, total_steps), momentum=config.momentum,
      weight_decay=config.weight_decay or None,
      gradient_accumulation_steps=(config.accumulation_steps
                                   if config.accumulation_steps > 1 else None))
