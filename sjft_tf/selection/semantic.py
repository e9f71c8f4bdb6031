"""Selection by deep features instead of low-level statistics (beyond Ge & Yu 2017).

Two ways, both over the L2-normalised pooled features of a pretrained base:
  * per image (a "deep-feature bank"): each target image's nearest source images by
    cosine similarity, searched with ScaNN's dot-product index; pools as in the paper.
  * per class (Cui et al., CVPR 2018; Liu et al., NeurIPS 2022 select pre-training
    classes, not images): source classes ranked by the cosine similarity of their mean
    feature to the nearest target class mean; the top classes, whole, until a budget
    of images is reached.

Features are cached as npz per (the split's images by fingerprint, feature settings).
"""

import dataclasses
import os

import numpy as np
from absl import logging
from tqdm import tqdm

from sjft_tf import bounds, errors, files
from sjft_tf.data import spec as spec_lib
from sjft_tf.selection import budget, manifest

FEATURES_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """The network whose pooled features describe images.

  Attributes:
    base: keras.applications class name.
    weights: "imagenet", a no-top weights file, or "" (random: meaningless here).
    alpha: width multiplier (None for networks without one: applications.width).
    input_size: images are resized to this square (no crop) before the network.
    batch_size: images per forward pass.
  """
  base: str = "MobileNet"
  weights: str = "imagenet"
  alpha: float | None = bounds.field(0.25, lower=0.01)
  input_size: int = bounds.field(96, lower=8)
  batch_size: int = bounds.field(128, lower=1)

  def __post_init__(self):
    from sjft_tf import applications  # pylint: disable=g-import-not-at-top (loads Keras)
    object.__setattr__(self, "alpha", applications.width(self.base, self.alpha))
    bounds.check(self)


def pooled_features(spec_dir: str, split: str, config: FeatureConfig,
                    cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(ids str [n], labels int [n], features float32 [n, d], unit L2 norm) of a split.

  With cache_dir, reads the cached npz of the same images (their fingerprint, not
  their folder) and settings, or writes it.
  """
  path, spec = None, spec_lib.load_spec(spec_dir)
  if cache_dir:
    key = files.fingerprint({"images": spec.split_fingerprint(split),
                             **dataclasses.asdict(config)})[:16]
    path = os.path.join(cache_dir, f"features-{key}.npz")
    try:  # a damaged or older cache is computed again (and replaced)
      cached = files.load_npz(path, "computed again")
      if int(cached.get("version", -1)) == FEATURES_VERSION:
        return cached["ids"], cached["labels"], cached["features"]
      logging.warning("features cache %s is of another version: computed again", path)
    except FileNotFoundError:
      pass
    except ValueError as error:  # (its message names the file and the remedy)
      logging.warning("features cache: %s", error)
  from sjft_tf import applications  # pylint: disable=g-import-not-at-top (loads Keras)
  from sjft_tf.data import pipeline
  from sjft_tf.training import model as model_lib

  model_config = model_lib.ModelConfig(config.base, config.weights, config.input_size,
                                       config.alpha)
  base = model_lib.build_base(model_config)
  network = applications.feature_extractor(config.base, base, config.input_size)
  reader = pipeline.ReaderConfig(batch_size=config.batch_size, resize_size=config.input_size,
                                 crop_size=config.input_size)
  ids, labels, features = [], [], []
  with tqdm(total=spec.split(split).num_examples, unit="img",
            desc=f"features {spec.name}/{split}") as progress:
    for batch in pipeline.make_dataset(spec_dir, split, reader, training=False):
      features.append(np.asarray(network(batch["image"], training=False), np.float32))
      ids.append(batch["id"].numpy().astype(str))
      labels.append(batch["label"].numpy())
      progress.update(len(ids[-1]))
  features = np.concatenate(features)
  features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
  ids, labels = np.concatenate(ids), np.concatenate(labels).astype(np.int32)
  if path:
    files.save_npz_atomic(path, version=FEATURES_VERSION, ids=ids, labels=labels,
                          features=features)
  return ids, labels, features


def reorder(ids: np.ndarray, features: np.ndarray, wanted_ids: np.ndarray) -> np.ndarray:
  """features' rows in the order of wanted_ids (every wanted id must be present)."""
  position = {key: row for row, key in enumerate(ids)}
  missing = [key for key in wanted_ids if key not in position]
  if missing:
    raise errors.InputError(f"{len(missing)} ids have no feature (first: {missing[0]})")
  return features[[position[key] for key in wanted_ids]]


def nearest_by_cosine(targets: np.ndarray, sources: np.ndarray, k: int,
                      method: str = "scann") -> tuple[np.ndarray, np.ndarray]:
  """Each target's k most similar sources by cosine (features of unit norm).

  Args:
    method: "scann" (index.build's dot-product index: a k-means tree, sqrt(n) leaves,
      a fifth searched, exact dot products of the candidates) or "exact".
  Returns:
    (indices int64 [nt, k], similarities float32 [nt, k]), most similar first.
  """
  k = min(k, len(sources))
  if method == "exact":
    scores = targets @ sources.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top.astype(np.int64), np.take_along_axis(scores, top, 1).astype(np.float32)
  if method != "scann":
    raise errors.InputError(f"unknown method {method!r} (scann, exact)")
  from sjft_tf.selection import index  # pylint: disable=g-import-not-at-top (loads ScaNN)
  searcher = index.build(sources.astype(np.float32), index.IndexConfig(), k, "dot_product")
  indices, scores = searcher.search_batched(targets.astype(np.float32), final_num_neighbors=k)
  return np.asarray(indices, np.int64), np.asarray(scores, np.float32)


def rank_source_classes(target_features: np.ndarray, target_labels: np.ndarray,
                        source_features: np.ndarray, source_labels: np.ndarray,
                        num_source_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Source classes, most similar first, and their scores float [num_source_classes].

  A class's score is the largest cosine similarity between its mean feature and any
  target class's mean feature (means renormalised); a class without images scores -inf.
  """
  def class_means(features, labels, count):
    sums = np.zeros((count, features.shape[1]), np.float64)
    np.add.at(sums, labels, features)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norms, 1e-12), norms[:, 0] > 0

  target_means, _ = class_means(target_features, target_labels, int(target_labels.max()) + 1)
  source_means, present = class_means(source_features, source_labels, num_source_classes)
  scores = (source_means @ target_means.T).max(axis=1)
  scores[~present] = -np.inf
  return np.argsort(-scores, kind="stable"), scores


def deep_selection(base: manifest.Selection, target_features: np.ndarray,
                   source_features: np.ndarray, params: manifest.SelectionParams,
                   method: str = "scann", inputs: str | None = None) -> manifest.Selection:
  """Round 0 over the same target and source images as `base`, ranked by cosine.

  Args:
    target_features, source_features: rows in base.target_ids / base.source_ids order.
    inputs: what it was made from (`Provenance.inputs`).
  """
  indices, similarities = nearest_by_cosine(target_features, source_features,
                                            params.max_neighbours, method)
  selection = manifest.Selection(
      round_index=0, params=params,
      provenance=dataclasses.replace(base.provenance, descriptors_dir=None,
                                     search_method=f"deep_cosine_{method}",
                                     search_seconds=None, inputs=inputs),
      target_ids=base.target_ids, target_labels=base.target_labels,
      levels=np.ones(len(base.target_ids), np.int32), neighbours=indices,
      distances=(1.0 - similarities).astype(np.float32), source_ids=base.source_ids,
      source_labels=base.source_labels, source_class_names=base.source_class_names)
  return manifest.derive(selection)


def base_features(base: manifest.Selection, config: FeatureConfig,
                  cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Pooled features of a round's target and source images, rows in its order:
  (targets float32 [nt, d], sources float32 [ns, d])."""
  target_ref, source_ref = base.provenance.target, base.provenance.source
  target = pooled_features(target_ref.spec_dir, target_ref.split, config, cache_dir)
  source_ids, source_features = [], []
  for split in source_ref.splits:
    ids, _, features = pooled_features(source_ref.spec_dir, split, config, cache_dir)
    source_ids.append(ids)
    source_features.append(features)
  return (reorder(target[0], target[2], base.target_ids),
          reorder(np.concatenate(source_ids), np.concatenate(source_features),
                  base.source_ids))


def _inputs(base_folder: str, **settings) -> str:
  """The fingerprint a deep or class round records: its base round and settings."""
  return files.fingerprint({"base": manifest.fingerprint(base_folder), **{
      k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
      for k, v in settings.items()}})


def nearest_round(base_folder: str, output_dir: str, config: FeatureConfig,
                  params: manifest.SelectionParams, cache_dir: str | None = None,
                  method: str = "scann", reuse: bool = True) -> str:
  """output_dir/round_000: each target's neighbours among the base round's sources by
  the cosine of pooled features (`deep_selection`). With `reuse`, kept when made from
  the same base round and settings (`manifest.reusable_round`; ScaNN is not
  deterministic, so a started run's pools must be kept). Returns the round folder."""
  inputs = _inputs(base_folder, features=config, params=params, method=method)
  folder = manifest.reusable_round(output_dir, inputs, f"deep_cosine_{method}") if (
      reuse) else None
  if folder:
    return folder
  base = manifest.load(base_folder)
  targets, sources = base_features(base, config, cache_dir)
  return manifest.save(deep_selection(base, targets, sources, params, method, inputs),
                       output_dir)


def deep_round(base_folder: str, output_root: str, config: FeatureConfig,
               params: manifest.SelectionParams, budget_images: int = 0,
               cache_dir: str | None = None, method: str = "scann",
               name: str = "deep") -> str:
  """round_000 of the deep-feature bank over the images of the round at base_folder.

  Neighbours are ranked once (output_root/<name>_ranked, K0 = params.k0, by
  `nearest_round`); with budget_images > 0 the pools take the budget's K0
  (`budget.plan`, output_root/<name>_k<K0>). Reused when made from the same inputs.
  Returns the round folder.
  """
  ranked = nearest_round(base_folder, os.path.join(output_root, f"{name}_ranked"), config,
                         params, cache_dir, method)
  if not budget_images:
    return ranked
  k0 = budget.k0_for_images(manifest.load(ranked).neighbours, budget_images)
  return manifest.k0_round(ranked, os.path.join(output_root, f"{name}_k{k0}"), k0)


def classes_round(base_folder: str, output_dir: str, config: FeatureConfig,
                  budget_images: int, cache_dir: str | None = None,
                  reuse: bool = True) -> str:
  """round_000 whose every pool is the source classes nearest the target classes
  (rank_source_classes), whole, until budget_images. With `reuse`, kept when made
  from the same base round and settings (`manifest.reusable_round`)."""
  inputs = _inputs(base_folder, features=config, budget_images=budget_images)
  folder = manifest.reusable_round(output_dir, inputs, "deep_class_means") if (
      reuse) else None
  if folder:
    return folder
  base = manifest.load(base_folder)
  targets, sources = base_features(base, config, cache_dir)
  order, _ = rank_source_classes(targets, base.target_labels, sources, base.source_labels,
                                 len(base.source_class_names))
  rows, _ = budget.class_rows(order, base.source_labels, budget_images)
  return manifest.uniform_round(base_folder, rows, output_dir, "deep_class_means", inputs)
