"""Mixed precision: Keras dtype policies, set while a model or bank is built.

  float32         everything in float32 (the default; what the tests compare against)
  mixed_bfloat16  layers compute in bfloat16, variables stay float32 (TPUs, Ampere and
                  later GPUs; no loss scaling needed: bfloat16 has float32's range)
  mixed_float16   layers compute in float16, variables float32 (Volta and later GPUs);
                  Keras' LossScaleOptimizer keeps small gradients from underflowing
                  (`Model.compile` wraps the optimizer itself under this policy)

What stays float32 under a mixed policy, so results stay correct: the heads (logits,
hence the softmax and the losses), the histogram counting and the divergence of the
descriptors, and every input and output of an exported model.
"""

import contextlib

import keras

from sjft_tf import errors

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def check(policy: str) -> str:
  """`policy` if it is one of POLICIES, else ValueError."""
  if policy not in POLICIES:
    raise errors.InputError(f"unknown dtype policy {policy!r}; known: {list(POLICIES)}")
  return policy


@contextlib.contextmanager
def dtype_policy(policy: str):
  """Layers built inside the block take `policy` (Keras' global policy is restored
  after, so one process can build models of several policies)."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(check(policy))
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)
