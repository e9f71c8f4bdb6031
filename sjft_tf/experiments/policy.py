"""Sizes of a comparison as pure functions of the data set (as BiT's hyper-rule states
its schedule as a function of the data set's size), so that one template fits a target
of 300 images and one of 30,000.

  schedule(train_images=1020, target_images_per_batch=32, target_epochs=94,
           logged_epochs=6)                      # -> (3000, 500): the from-scratch preset
  budget_images(source_images=90000, fraction=0.075)  # -> 6750
"""

import math

from sjft_tf import errors


def schedule(train_images: int, target_images_per_batch: int, target_epochs: float,
             logged_epochs: int) -> tuple[int, int]:
  """Training batches that show every training image about `target_epochs` times.

  Args:
    train_images: images in the target's training split.
    target_images_per_batch: target images a batch (a joint batch's target share).
    target_epochs: passes over the target's training images (> 0).
    logged_epochs: epochs of logging (validation, checkpoints, TensorBoard) the run is
      cut into (>= 1); the batches are rounded up to a whole number of them.
  Returns:
    (total_steps, steps_per_epoch): total_steps = steps_per_epoch * logged_epochs,
    steps_per_epoch = ceil(target_epochs * train_images / target_images_per_batch /
    logged_epochs), at least 1.
  """
  if train_images < 1 or target_images_per_batch < 1:
    raise errors.InputError(f"schedule: {train_images} training images and "
                            f"{target_images_per_batch} target images a batch; both must be >= 1")
  if target_epochs <= 0 or logged_epochs < 1:
    raise errors.InputError(f"schedule: target_epochs {target_epochs} must be > 0 and "
                            f"logged_epochs {logged_epochs} >= 1")
  batches = target_epochs * train_images / target_images_per_batch
  # (1e-9: 94 epochs of 1,020 images in batches of 32 is 2,996.25 batches, not 2,996.2500001)
  steps_per_epoch = max(1, math.ceil(batches / logged_epochs - 1e-9))
  return steps_per_epoch * logged_epochs, steps_per_epoch


def warmup_steps(train_images: int, target_images_per_batch: int,
                 warmup_epochs: float) -> int:
  """Batches of a head warm-up of `warmup_epochs` passes over the training images
  (rounded up; 0 for no warm-up)."""
  if warmup_epochs <= 0:
    return 0
  return max(1, math.ceil(warmup_epochs * train_images / target_images_per_batch - 1e-9))


def budget_images(source_images: int, fraction: float) -> int:
  """Source images of every partial-source row: `fraction` of the source, rounded to
  the nearest image, at least 1 and at most the source.

  Raises:
    ValueError: fraction outside (0, 1], or an empty source.
  """
  if not 0 < fraction <= 1:
    raise errors.InputError(f"budget_fraction {fraction}: must be in (0, 1]")
  if source_images < 1:
    raise errors.InputError("budget_fraction: the source has no images")
  return min(source_images, max(1, round(fraction * source_images)))
