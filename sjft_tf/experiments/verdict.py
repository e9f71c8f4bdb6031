"""How sure a comparison is: the difference between two rows of a study with a 95%
interval that counts both the seeds' spread and the evaluation split's sampling, and a
one-word reading. Pure NumPy / SciPy on the per-image results of results.json.

A study's rows are evaluated on one split (the same images for every row and seed), so
a difference has two sources of error:
  * the seeds: training noise, seen as the spread of the per-seed differences d_s;
  * the split: the images are a sample; a row that wins on these 1,000 images may not on
    others. Paired over images (both rows scored on the same image), its standard error
    is the spread over images of each image's mean difference over seeds, / sqrt(N).
The two variances add (conservative: each also holds a little of the other's noise),
and the interval takes Student's t with the Welch-Satterthwaite degrees of freedom of
the sum (few seeds: wide). Without per-image results (studies of earlier versions) the
split term is the binomial variance of each row's accuracy, summed as if the rows erred
independently: wider than the paired one whenever the rows err on the same images.

  interval = difference(correct_a, correct_b)     # bool [seeds, images] each
  interval["mean"], interval["low"], interval["high"], interval["reading"]
"""

import numpy as np
from scipy import stats

from sjft_tf import errors


# Readings of an interval of row A minus row B.
HELPS, NO_EVIDENCE, HURTS = "helps", "no evidence", "hurts"
CONFIDENCE = 0.95


def reading(low: float, high: float) -> str:
  """helps (the interval above 0), hurts (below 0), else no evidence."""
  return HELPS if low > 0 else HURTS if high < 0 else NO_EVIDENCE


def _interval(mean: float, image_variance: float, image_df: int, seed_variance: float,
              seed_df: int) -> dict:
  """mean +- t * sqrt(sum of variances), t with Welch-Satterthwaite degrees of freedom."""
  parts = [(v, df) for v, df in ((image_variance, image_df), (seed_variance, seed_df))
           if v > 0 and df > 0]
  total = sum(v for v, _ in parts)
  if total == 0:
    half, df = 0.0, float("inf")
  else:
    df = total ** 2 / sum(v ** 2 / d for v, d in parts)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df) * np.sqrt(total))
  low, high = mean - half, mean + half
  return {"mean": mean, "low": low, "high": high, "reading": reading(low, high),
          "se_images": float(np.sqrt(image_variance)), "se_seeds": float(np.sqrt(seed_variance)),
          "df": df}


def difference(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
  """Row A minus row B, paired by seed and by image.

  Args:
    correct_a, correct_b: bool [seeds, images]: whether each seed's model of the row got
      each image of the split right; row s of both is the same seed.
  Returns:
    {"mean": the mean over seeds of the accuracy difference (a fraction), "low", "high":
    its 95% interval, "reading", "se_images", "se_seeds", "df", "seeds", "images",
    "paired": True}.
  """
  a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
  if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
    raise errors.InputError(f"per-image results of shapes {a.shape} and {b.shape}: need two "
                            f"[seeds, images] arrays of one shape, at least 2 images")
  seeds, images = a.shape
  per_image = (a - b).mean(axis=0)  # [images]: the difference on each image, over seeds
  per_seed = (a - b).mean(axis=1)  # [seeds]
  seed_variance = per_seed.var(ddof=1) / seeds if seeds > 1 else 0.0
  result = _interval(float(per_seed.mean()), float(per_image.var(ddof=1) / images),
                     images - 1, float(seed_variance), seeds - 1)
  return {**result, "seeds": seeds, "images": images, "paired": True}


def difference_unpaired(accuracies_a, accuracies_b, images: int) -> dict:
  """Row A minus row B from per-seed accuracies only (no per-image results): the split
  term as if the rows erred independently (module docstring).

  Args:
    accuracies_a, accuracies_b: [seeds] accuracy fractions, seed s of both the same seed.
    images: images of the evaluation split.
  """
  a, b = np.asarray(accuracies_a, float), np.asarray(accuracies_b, float)
  if a.shape != b.shape or a.ndim != 1 or not len(a) or images < 2:
    raise errors.InputError(f"per-seed accuracies of shapes {a.shape} and {b.shape} on {images} "
                            f"images: need one shape and at least 2 images")
  seeds = len(a)
  per_seed = a - b
  pa, pb = a.mean(), b.mean()
  image_variance = (pa * (1 - pa) + pb * (1 - pb)) / images
  seed_variance = per_seed.var(ddof=1) / seeds if seeds > 1 else 0.0
  result = _interval(float(per_seed.mean()), float(image_variance), images - 1,
                     float(seed_variance), seeds - 1)
  return {**result, "seeds": seeds, "images": images, "paired": False}
