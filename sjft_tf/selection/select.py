"""The selection stage's API: the initial selection from descriptors, and the next
round's selection from predictions on the target training images."""

import dataclasses
import os

import numpy as np

from sjft_tf import errors, outputs
from sjft_tf.descriptors import store
from sjft_tf.selection import levels as levels_lib
from sjft_tf.selection import budget, manifest, search, subset


def write_round_subset(selection: manifest.Selection, folder: str) -> None:
  """The round's selected source images, with their head labels, as TFRecords in
  folder/subset (`subset.write_subset`: a whole subset already there is kept)."""
  source = selection.provenance.source
  subset.write_subset(
      source.spec_dir, source.splits,
      dict(zip(selection.source_ids[selection.selected].tolist(),
               selection.head_labels.tolist())),
      selection.head_classes, os.path.join(folder, manifest.SUBSET_DIRNAME),
      f"{source.dataset}_selected_round{selection.round_index}",
      metadata={"selection_round": selection.round_index})


def _reusable_round(folder: str, descriptors_dir: str, params: manifest.SelectionParams,
                    config: search.SearchConfig, target_split: str, descriptors: str):
  """The round 0 already in `folder` when it was made the same way (parameters, and
  `descriptors`, the fingerprint of the descriptors to search: `files.matches`' rule
  for older rounds), else None; a damaged round is searched again."""
  if not manifest.round_is_whole(folder):  # absent or damaged: searched again
    return None
  try:
    existing = manifest.load(folder)
  except (ValueError, FileNotFoundError, KeyError, TypeError):
    return None
  made = existing.provenance
  same = (existing.params == params and made.target.splits == (target_split,)
          and os.path.abspath(made.descriptors_dir or "") == os.path.abspath(descriptors_dir)
          and made.inputs in (None, descriptors)
          and config.method in ("auto", made.search_method))
  return existing if same else None


def initial_selection(descriptors_dir: str, output_dir: str,
                      params: manifest.SelectionParams = manifest.SelectionParams(),
                      config: search.SearchConfig | None = None,
                      target_split: str = "train", write_subset: bool = True,
                      reuse: bool = True):
  """Round 0: every target at level 1, its K_max nearest sources found and ranked.

  Args:
    reuse: keep a round 0 already in output_dir made from the same descriptors with
      the same parameters (a rerun resumes; ScaNN's index is not deterministic, so a
      new search could change the pools of a training run that already started).
  Returns:
    (the Selection, its round folder).
  """
  config = config or search.SearchConfig()
  folder = manifest.round_dir(output_dir, 0)
  described = outputs.DescriptorSet.read(descriptors_dir)
  descriptors = described.fingerprint(target_split)
  existing = _reusable_round(folder, descriptors_dir, params, config, target_split,
                             descriptors) if reuse else None
  if existing is not None:
    if write_subset:
      write_round_subset(existing, folder)
    return existing, folder
  config = dataclasses.replace(
      config, num_neighbours=params.max_neighbours,
      work_dir=config.work_dir or os.path.join(folder, "beam_search"))
  target, source = described.dataset("target", target_split), described.dataset("source")
  targets = store.load_all(descriptors_dir, "target", target_split)
  shards = [store.load_ids_labels(p) for p in store.shard_paths(descriptors_dir, "source")]
  source_ids = np.concatenate([ids for ids, _ in shards])
  source_labels = np.concatenate([labels for _, labels in shards])
  found = _find(descriptors_dir, targets.descriptors, len(source_ids), config)
  selection = manifest.Selection(
      round_index=0, params=params,
      provenance=outputs.Provenance(
          target, source, found.method, round(found.seconds, 2), descriptors_dir,
          inputs=descriptors),
      target_ids=targets.ids, target_labels=targets.labels,
      levels=np.ones(len(targets.ids), np.int32), neighbours=found.indices,
      distances=found.distances, source_ids=source_ids, source_labels=source_labels,
      source_class_names=described.entries("source")[0]["class_names"])
  selection = manifest.derive(selection)
  folder = manifest.save(selection, output_dir)
  if write_subset:
    write_round_subset(selection, folder)
  return selection, folder


def budget_round(ranked_folder: str, output_dir: str, budget_images: int,
                 write_subset: bool = True):
  """Round 0 in output_dir: the ranked round at ranked_folder with pools at the K0 of
  `budget_images` source images (`budget.plan`; no second search). Reused when made
  from the same round and K0.

  Returns:
    (the Selection, its round folder).
  """
  ranked = manifest.load(ranked_folder)
  k0 = budget.plan(ranked.neighbours, ranked.params.k0, len(ranked.selected),
                   budget_images).k0
  folder = manifest.k0_round(ranked_folder, output_dir, k0)
  selection = manifest.load(folder)
  if write_subset:
    write_round_subset(selection, folder)
  return selection, folder


def _find(descriptors_dir: str, targets: np.ndarray, num_sources: int,
          config: search.SearchConfig) -> search.Neighbours:
  """The neighbour search: on Beam workers when config.pipeline_args says so, else here."""
  if config.pipeline_args:
    from sjft_tf.beam import search as beam_search  # pylint: disable=g-import-not-at-top
    return beam_search.find(descriptors_dir, targets, num_sources, config)
  return search.find(descriptors_dir, targets, num_sources, config)


def next_round(previous_folder: str, target_ids, probabilities: np.ndarray,
               rule: levels_lib.LevelRule = levels_lib.LevelRule(),
               output_dir: str | None = None, write_subset: bool = True):
  """The next round: levels updated from predictions, pools grown, no new search.

  Args:
    previous_folder: a round folder (…/round_NNN).
    target_ids: str [n] ids of the predicted target images (any order; all of them).
    probabilities: float [n, classes] target-class probabilities for those ids.
    output_dir: where round_NNN+1 goes (default: beside the previous round).
  Returns:
    (the new Selection, its round folder).
  """
  previous = manifest.load(previous_folder)
  order = {str(i): n for n, i in enumerate(np.asarray(target_ids).tolist())}
  missing = [i for i in previous.target_ids.tolist() if i not in order]
  if missing:
    raise errors.InputError(f"predictions lack {len(missing)} target images, e.g. {missing[:3]}")
  rows = np.array([order[i] for i in previous.target_ids.tolist()])
  predicted = np.asarray(probabilities)[rows]
  selection = manifest.derive(dataclasses.replace(
      previous, round_index=previous.round_index + 1,
      levels=levels_lib.update_levels(previous.levels, predicted, previous.target_labels, rule),
      provenance=dataclasses.replace(
          previous.provenance, previous_round=previous_folder,
          level_rule=dataclasses.asdict(rule),
          # How well the predictions that set the levels fit the labels.
          level_predictions_accuracy=float(np.mean(
              predicted.argmax(axis=1) == previous.target_labels)))))
  folder = manifest.save(selection, output_dir or os.path.dirname(os.path.abspath(previous_folder)))
  if write_subset:
    write_round_subset(selection, folder)
  return selection, folder
