"""The selection manifest: each target image's ranked source neighbours, its level, its
pool, and what follows from them (the selected subset, sampling weights, the source
classes the source head keeps).

Files of a round (`<output_dir>/round_NNN/`):
  selection.json   format version, round, parameters, datasets, the source-head classes
                   (head label = index), this round's retained classes, counts
  selection.npz    arrays: target_ids, target_labels, levels, neighbours [nt, K_max]
                   (indices into source_ids), distances, source_ids, source_labels,
                   pool_sizes, selected (indices into source_ids), weights, head_labels
  subset/          the selected source images as TFRecords + dataset_spec.json, labelled
                   with the source head's labels (written by sjft_tf.selection.subset)

The source head's classes are decided here, once for every round of a run: the source
classes with at least min_images_per_class images among every target's first
k0 * max_level neighbours (all a run can reach). Pools only grow, so each round's
retained classes are among them and the head never changes shape; training reads them.

Pairing rule (the paper's data layer): draw a target image with probability
proportional to its level, then one source image uniformly from its pool. A source
image's sampling weight is the probability this draws it; the weights sum to 1.
"""

import dataclasses
import os

from absl import logging
import numpy as np

from sjft_tf import bounds, errors
from sjft_tf import files, outputs

FORMAT_VERSION = 1
JSON_FILENAME = outputs.ROUND_FILENAME
ARRAYS_FILENAME = "selection.npz"
TIMING_FILENAME = "timing.json"  # the search's seconds, outside the fingerprinted files
SUBSET_DIRNAME = "subset"


@dataclasses.dataclass(frozen=True)
class SelectionParams:
  """Pool sizes and class retention.

  Attributes:
    k0: pool size per level: a level-L target's pool is its first k0 * L neighbours
      (the authors used 300 for MIT Indoor 67).
    max_neighbours: ranked neighbours kept per target (K_max, the cap of every pool).
    min_images_per_class: a source class needs this many selected images to keep a
      source-head output; images of dropped classes leave the pools.
    max_level: the highest level a target can reach (LevelRule.max_level of the run):
      fixes the neighbours a run can reach, hence the source head's classes.
  """
  k0: int = dataclasses.field(default=300, metadata={"flag": {"lower_bound": 1}})
  max_neighbours: int = dataclasses.field(default=5000, metadata={"flag": {"lower_bound": 1}})
  min_images_per_class: int = dataclasses.field(default=5,
                                                metadata={"flag": {"lower_bound": 1}})
  max_level: int = dataclasses.field(default=10, metadata={"flag": {"lower_bound": 1}})

  def __post_init__(self):
    bounds.check(self)


def round_dir(output_dir: str, round_index: int) -> str:
  return os.path.join(output_dir, f"round_{round_index:03d}")


@dataclasses.dataclass
class Selection:
  """One round's selection (see the module docstring for the files)."""
  round_index: int
  params: SelectionParams
  provenance: outputs.Provenance  # datasets, search, previous round
  target_ids: np.ndarray      # str [nt]
  target_labels: np.ndarray   # int32 [nt]
  levels: np.ndarray          # int32 [nt]
  neighbours: np.ndarray      # int64 [nt, K] indices into source_ids, nearest first
  distances: np.ndarray       # float32 [nt, K]
  source_ids: np.ndarray      # str [ns]
  source_labels: np.ndarray   # int32 [ns] labels of the source dataset
  source_class_names: list    # names of the source dataset's labels
  # Derived by `derive` (None before):
  pool_sizes: np.ndarray = None     # int32 [nt]
  selected: np.ndarray = None       # int64 [n_selected] indices into source_ids
  weights: np.ndarray = None        # float64 [n_selected], sum 1
  head_labels: np.ndarray = None    # int32 [n_selected] source-head labels
  retained_classes: list = None     # names of this round's classes, a subset of...
  head_classes: list = None         # source-head label -> source class name

  def pools(self) -> list[np.ndarray]:
    """Each target's pool: indices into source_ids (retained classes only)."""
    kept = np.zeros(len(self.source_ids), bool)
    kept[self.selected] = True
    return [row[:size][kept[row[:size]]] for row, size in zip(self.neighbours, self._raw_sizes())]

  def _raw_sizes(self) -> np.ndarray:
    return np.minimum(self.params.k0 * self.levels.astype(np.int64), self.neighbours.shape[1])


def reachable_sources(selection: Selection) -> np.ndarray:
  """Indices into source_ids of every target's first k0 * max_level neighbours (all
  that any round of a run can pool), ascending."""
  reach = min(selection.params.k0 * selection.params.max_level, selection.neighbours.shape[1])
  reachable = np.unique(selection.neighbours[:, :reach])
  return reachable[reachable >= 0]


def head_class_ids(selection: Selection) -> np.ndarray:
  """The source classes of the source head, ascending (the module docstring)."""
  counts = np.bincount(selection.source_labels[reachable_sources(selection)],
                       minlength=len(selection.source_class_names))
  return np.nonzero(counts >= selection.params.min_images_per_class)[0]


def head_label_map(selection: Selection, missing: int = -1) -> np.ndarray:
  """int64 [source classes]: each source class's source-head label (the order of
  selection.head_classes, the one place the head's classes are decided), `missing`
  for classes outside the head."""
  head_of = np.full(len(selection.source_class_names), missing, np.int64)
  index = {name: c for c, name in enumerate(selection.source_class_names)}
  head_of[[index[name] for name in selection.head_classes]] = np.arange(
      len(selection.head_classes))
  return head_of


def derive(selection: Selection) -> Selection:
  """A copy of `selection` with pools, the selected subset, weights, retained and head
  classes derived from its levels (the argument is left as it is)."""
  selection = dataclasses.replace(selection)
  raw_sizes = selection._raw_sizes()
  in_pool = np.zeros(len(selection.source_ids), bool)
  for row, size in zip(selection.neighbours, raw_sizes):
    in_pool[row[:size]] = True
  candidates = np.nonzero(in_pool)[0]
  counts = np.bincount(selection.source_labels[candidates],
                       minlength=len(selection.source_class_names))
  retained = np.nonzero(counts >= selection.params.min_images_per_class)[0]
  keep = np.isin(selection.source_labels[candidates], retained)
  selection.selected = candidates[keep]
  selection.retained_classes = [selection.source_class_names[c] for c in retained]
  selection.head_classes = [selection.source_class_names[c]
                            for c in head_class_ids(selection)]
  selection.head_labels = head_label_map(selection)[
      selection.source_labels[selection.selected]].astype(np.int32)

  pools = selection.pools()
  selection.pool_sizes = np.array([len(p) for p in pools], np.int32)
  position = np.full(len(selection.source_ids), -1, np.int64)
  position[selection.selected] = np.arange(len(selection.selected))
  active = selection.pool_sizes > 0
  target_share = np.where(active, selection.levels, 0).astype(np.float64)
  target_share /= max(target_share.sum(), 1e-300)
  weights = np.zeros(len(selection.selected), np.float64)
  for pool, share in zip(pools, target_share):
    if len(pool):
      np.add.at(weights, position[pool], share / len(pool))
  selection.weights = weights
  return selection


def save(selection: Selection, output_dir: str) -> str:
  """Writes the round's selection.json and selection.npz; returns the round folder."""
  folder = round_dir(output_dir, selection.round_index)
  files.remove_stale_temporaries(folder)  # of a save killed half way
  arrays = {name: getattr(selection, name) for name in (
      "target_ids", "target_labels", "levels", "neighbours", "distances", "source_ids",
      "source_labels", "pool_sizes", "selected", "weights", "head_labels")}
  files.save_npz_atomic(os.path.join(folder, ARRAYS_FILENAME), **arrays)
  if selection.provenance.search_seconds is not None:  # apart: it differs run to run
    files.write_json_atomic(os.path.join(folder, TIMING_FILENAME),
                            {"search_seconds": selection.provenance.search_seconds})
  files.write_json_atomic(os.path.join(folder, JSON_FILENAME), {
      "format_version": FORMAT_VERSION,
      "round": selection.round_index,
      "params": dataclasses.asdict(selection.params),
      # Paths relative to the round folder: a moved tree of data and runs still works.
      "info": selection.provenance.to_json(folder),
      "source_class_names": list(selection.source_class_names),
      "source_head_classes": selection.head_classes,
      "retained_classes": selection.retained_classes,
      "counts": {
          "targets": int(len(selection.target_ids)),
          "targets_without_pool": int((selection.pool_sizes == 0).sum()),
          "selected_images": int(len(selection.selected)),
          "retained_classes": len(selection.retained_classes),
          "mean_pool_size": float(selection.pool_sizes.mean()) if len(selection.pool_sizes) else 0.0,
          "levels": {str(v): int(c) for v, c in zip(*np.unique(selection.levels,
                                                                return_counts=True))},
      },
  })
  return folder


def load(folder: str) -> Selection:
  """Reads a round folder written by `save`."""
  meta = files.read_versioned_json(os.path.join(folder, JSON_FILENAME), FORMAT_VERSION,
                                   "sjft-select")
  arrays = files.load_npz(os.path.join(folder, ARRAYS_FILENAME),
                         "remake the round: rerun the command that wrote it (sjft-select "
                         "remakes its round_000; sjft-train its later rounds)")
  provenance = outputs.Provenance.from_json(meta["info"], folder)
  if provenance.search_seconds is None:
    try:
      provenance = dataclasses.replace(provenance, search_seconds=search_seconds(folder))
    except ValueError as error:  # the time is for people: the round is still whole
      logging.warning("%s; the search time is unknown (sjft-select remakes the round)",
                      error)
  selection = Selection(round_index=meta["round"], params=SelectionParams(**meta["params"]),
                        provenance=provenance,
                        source_class_names=meta["source_class_names"],
                        retained_classes=meta["retained_classes"],
                        head_classes=meta.get("source_head_classes"), **arrays)
  if selection.head_classes is None:  # written before the head classes were stored
    selection.head_classes = [selection.source_class_names[c]
                              for c in head_class_ids(selection)]
  return selection


def search_seconds(folder: str) -> float | None:
  """The round's search time from its timing.json; None when the round has none (a
  uniform round, or a round of an earlier version, which kept it in selection.json).

  Raises:
    ValueError: naming timing.json when it is damaged.
  """
  path = os.path.join(folder, TIMING_FILENAME)
  if not os.path.exists(path):
    return None
  payload = files.read_json(path)
  seconds = payload.get("search_seconds") if isinstance(payload, dict) else None
  if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
    raise errors.InputError(f"{path} is damaged (no search_seconds number)")
  return float(seconds)


def fingerprint(folder: str) -> str:
  """`files.fingerprint` of a round folder's selection.json and selection.npz (their
  paths are relative, so a moved round keeps it): what a training run records of the
  round it started from. A round made again the same way has the same bytes (the
  search's time is kept apart, in timing.json)."""
  return files.fingerprint({}, os.path.join(folder, JSON_FILENAME),
                           os.path.join(folder, ARRAYS_FILENAME))


def whole_round_info(folder: str) -> dict | None:
  """The `info` of a round folder's selection.json when the folder holds a readable
  selection.json of this format, a whole selection.npz and a readable (or absent)
  timing.json, else None: the rule every reuse of a stored round applies before
  comparing its inputs."""
  try:
    payload = files.read_versioned_json(os.path.join(folder, JSON_FILENAME),
                                        FORMAT_VERSION, "sjft-select")
    search_seconds(folder)
  except (ValueError, FileNotFoundError):
    return None
  return payload["info"] if files.npz_is_whole(os.path.join(folder, ARRAYS_FILENAME)) else None


def round_is_whole(folder: str) -> bool:
  """Whether `whole_round_info` accepts the folder."""
  return whole_round_info(folder) is not None


def reusable_round(output_dir: str, inputs: str, search_method: str) -> str | None:
  """output_dir's round_000 when it was made by `search_method` from `inputs` (its
  `Provenance.inputs`; a round of an earlier version, which recorded none, is
  trusted), else None."""
  folder = round_dir(output_dir, 0)
  made = whole_round_info(folder)
  if made is None:  # absent or damaged: made again
    return None
  same = made.get(files.INPUTS_KEY) in (None, inputs)
  return folder if same and made["search"]["method"] == search_method else None


def k0_round(ranked_folder: str, output_dir: str, k0: int) -> str:
  """output_dir/round_000: the round at ranked_folder with pools of `k0` per level
  (its neighbours as they are, so no second search; a budget's K0, `budget.plan`).
  Reused when made from the same round and k0 (`reusable_round`). Returns the folder."""
  ranked = load(ranked_folder)
  inputs = files.fingerprint({"base": fingerprint(ranked_folder), "k0": k0})
  folder = reusable_round(output_dir, inputs, ranked.provenance.search_method)
  if folder:
    return folder
  return save(derive(dataclasses.replace(
      ranked, params=dataclasses.replace(ranked.params, k0=k0),
      provenance=dataclasses.replace(ranked.provenance, inputs=inputs))), output_dir)


def uniform_round(base_folder: str, source_rows: np.ndarray, output_dir: str,
                  name: str, inputs: str | None = None) -> str:
  """round_000 where every target's pool is `source_rows` (indices into the base
  round's source_ids): joint training with a fixed subset (all, random, whole
  classes). Reused when made from the same inputs (`reusable_round`): by default the
  base round and the rows; a caller that derives the rows passes what it derived them
  from.

  Returns:
    The round folder (output_dir/round_000).
  """
  rows = np.asarray(source_rows, np.int64)
  inputs = inputs or files.fingerprint({"base": fingerprint(base_folder),
                                        "rows": rows.tolist(), "name": name})
  folder = reusable_round(output_dir, inputs, name)
  if folder:
    return folder
  base = load(base_folder)
  uniform = Selection(
      round_index=0,
      params=dataclasses.replace(base.params, k0=len(rows), max_neighbours=len(rows)),
      provenance=dataclasses.replace(base.provenance, search_method=name,
                                     search_seconds=None, descriptors_dir=None,
                                     inputs=inputs),
      target_ids=base.target_ids, target_labels=base.target_labels, levels=base.levels,
      neighbours=np.broadcast_to(rows, (len(base.target_ids), len(rows))),
      distances=np.zeros((len(base.target_ids), len(rows)), np.float32),
      source_ids=base.source_ids, source_labels=base.source_labels,
      source_class_names=base.source_class_names)
  return save(derive(uniform), output_dir)
