"""The budget policy: what `--budget_images` means in every command (`sjft-select`,
`sjft-reproduce`, the budget sweep).

A budget is the number of distinct source images a row trains on. Rows whose pools are
ranked neighbours (the filter-bank banks, the deep-feature bank) meet it with the smallest
K0 whose union of every target's first K0 neighbours reaches it; uniform rows meet it
exactly (whole source classes until reached, or that many images at random). Budget 0:
the ranked rows keep their K0 and the uniform rows take as many images as the reference
round (the learned bank at --k0) selects. Pure functions of arrays, no files:

  sized = plan(reference_round, budget)   # Budget(images=6740, k0=...)
  k0 = k0_for_images(deep_round.neighbours, sized.images)
  rows, classes = class_rows(class_order, source_labels, sized.images)
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Budget:
  """The sizes of a study's budget-sized rows.

  images: source images every budget-sized row uses (uniform rows exactly, ranked rows
    at least, up to all of their ranked neighbours).
  k0: pool size per level of the reference bank's row (its --k0 when no budget is set).
  """
  images: int
  k0: int


def k0_for_images(neighbours: np.ndarray, images: int) -> int:
  """The smallest K0 whose union of every target's first K0 neighbours holds at least
  `images` distinct sources (all of neighbours' columns when none does).

  Args:
    neighbours: int [targets, K] ranked source indices (-1: none).
  """
  low, high = 1, neighbours.shape[1]

  def union(k0):
    rows = neighbours[:, :k0]
    return len(np.unique(rows[rows >= 0]))

  if union(high) < images:
    return high
  while low < high:
    middle = (low + high) // 2
    if union(middle) >= images:
      high = middle
    else:
      low = middle + 1
  return low


def plan(neighbours: np.ndarray, k0: int, selected_images: int, budget: int) -> Budget:
  """The budget-sized rows' sizes from the reference round (its ranked `neighbours`
  int [targets, K], its `k0` and the `selected_images` its pools hold at that k0) and
  `budget` (0: none)."""
  if not budget:
    return Budget(images=selected_images, k0=k0)
  return Budget(images=budget, k0=k0_for_images(neighbours, budget))


def class_rows(class_order: np.ndarray, source_labels: np.ndarray,
               images: int) -> tuple[np.ndarray, list]:
  """Rows of the first classes of class_order whose images together reach `images`.

  Args:
    class_order: int [source classes] classes, nearest first.
    source_labels: int [sources] each source image's class.
  Returns:
    (source rows int64 sorted, the classes taken in order).
  """
  counts = np.bincount(source_labels, minlength=len(class_order))
  taken, total = [], 0
  for label in class_order:
    if total >= images or counts[label] == 0:
      break
    taken.append(int(label))
    total += int(counts[label])
  return np.nonzero(np.isin(source_labels, taken))[0].astype(np.int64), taken


def random_rows(num_sources: int, images: int, seed: int) -> np.ndarray:
  """`images` source rows (all when fewer) drawn without replacement with `seed`:
  int64 [min(images, num_sources)] sorted."""
  return np.sort(np.random.default_rng(seed).choice(
      np.arange(num_sources), size=min(images, num_sources), replace=False))
