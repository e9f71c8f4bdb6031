"""Typed records of what one stage hands to the next.

  DatasetRef     an ingested dataset (its spec folder) and the splits a stage used
  DescriptorSet  a descriptor folder: which datasets and splits it describes
  Provenance     where a selection round came from (`manifest.Selection.provenance`)
  TrainedRun     a finished training run: its model file, class names and image sizes

The files that hold them store paths relative to themselves (`files.relative_to`), so
a tree of data and runs works when moved or copied as a whole; absolute paths written
by older versions are still read. Evaluation and export need only `TrainedRun` and the
model (no selection or search code).
"""

import dataclasses
import os
import zipfile

from sjft_tf import errors, files
from sjft_tf.descriptors import store

ROUND_FILENAME = "selection.json"  # a round folder holding it is complete
TRAIN_CONFIG_FILENAME = "train_config.json"
TRAIN_REPORT_FILENAME = "train_report.json"
MODEL_FILENAME = "model.keras"
MODEL_DAMAGED = "damaged"  # model.keras is not a whole Keras archive
MODEL_REPLACED = "replaced"  # a whole archive, not the file the run's report records


def model_problem_message(model_path: str, problem: str) -> str:
  """One line naming model.keras, what `TrainedRun.model_problem` found, and the way
  out that works: a damaged model is trained again by sjft-train; a replaced one is
  the user's file, which nothing overwrites (they move it away first)."""
  run_dir = os.path.dirname(model_path) or "."
  if problem == MODEL_REPLACED:
    return (f"{model_path} is a Keras model but not the one this run's report records "
            f"(replaced or changed after training): move it out of {run_dir}, then rerun "
            f"sjft-train with the run's flags to train the run again")
  return (f"{model_path} is damaged (not a whole Keras archive); rerun sjft-train with "
          f"the run's flags: it trains the run again")


@dataclasses.dataclass(frozen=True)
class DatasetRef:
  """An ingested dataset and splits of it.

  Attributes:
    dataset: its name (DatasetSpec.name).
    spec_dir: its folder (dataset_spec.json and the TFRecord shards).
    splits: the splits used; a selection's target has one, its source one or more.
  """
  dataset: str
  spec_dir: str
  splits: tuple[str, ...]

  @property
  def split(self) -> str:
    """The one split of a target."""
    if len(self.splits) != 1:
      raise errors.InputError(f"{self.spec_dir}: {len(self.splits)} splits where one was expected")
    return self.splits[0]

  def to_json(self, folder: str, one_split: bool = False) -> dict:
    """As stored in a file of `folder` ({"split": ...} when `one_split`)."""
    splits = {"split": self.split} if one_split else {"splits": list(self.splits)}
    return {"dataset": self.dataset, "spec_dir": files.relative_to(self.spec_dir, folder),
            **splits}

  @classmethod
  def from_json(cls, value: dict, folder: str) -> "DatasetRef":
    splits = value["splits"] if "splits" in value else [value["split"]]
    return cls(value["dataset"], files.resolve(value["spec_dir"], folder), tuple(splits))


@dataclasses.dataclass(frozen=True)
class DescriptorSet:
  """A descriptor folder written by sjft-descriptors (its descriptor_metadata.json).

  Attributes:
    directory: the folder.
    metadata: the metadata, spec folders resolved (`store.load_metadata`).
  """
  directory: str
  metadata: dict

  @classmethod
  def read(cls, directory: str) -> "DescriptorSet":
    return cls(directory, store.load_metadata(directory))

  def entries(self, role: str, split: str | None = None) -> list[dict]:
    """The described splits of `role` ("target" or "source"), of `split` if given."""
    return [e for e in self.metadata["datasets"]
            if e["role"] == role and split in (None, e["split"])]

  def fingerprint(self, target_split: str) -> str:
    """`files.fingerprint` of what a search of the target's `target_split` reads: the
    fit record and the entries of that split and of the source (without their folders,
    so a moved tree keeps it); a round searched in them records it."""
    used = [{k: v for k, v in e.items() if k != "spec_dir"}
            for e in self.entries("target", target_split) + self.entries("source")]
    return files.fingerprint({"fit": self.metadata["fit"], "datasets": used})

  def dataset(self, role: str, split: str | None = None) -> DatasetRef:
    """The one dataset of `role` and its described splits (or `split`).

    Raises:
      ValueError: none is described, or several datasets are.
    """
    entries = self.entries(role, split)
    if not entries:
      raise errors.InputError(f"{self.directory}: no {role} descriptors"
                              f"{f' for split {split}' if split else ''}")
    if len({e["spec_dir"] for e in entries}) > 1:
      raise errors.InputError(f"{self.directory}: {role} descriptors come from several datasets")
    return DatasetRef(entries[0]["dataset"], entries[0]["spec_dir"],
                      tuple(e["split"] for e in entries))


@dataclasses.dataclass(frozen=True)
class Provenance:
  """Where a selection round came from.

  Attributes:
    target: the target dataset and the split whose images got neighbours.
    source: the source dataset and its described splits.
    search_method: how the neighbours were found ("exact", "scann", "deep_cosine_...",
      or the name of a fixed subset: "all", "random", "classes").
    search_seconds: the search's time (None where no search ran); kept in the round's
      timing.json, not in selection.json (rounds of earlier versions hold it there).
    descriptors_dir: the descriptor folder searched (None: not by descriptors).
    previous_round: the round this one updated (None for round 0).
    level_rule: the LevelRule's fields that set this round's levels.
    level_predictions_accuracy: training accuracy of the predictions that set them.
    inputs: fingerprint of what the round was made from: the descriptors searched
      (`DescriptorSet.fingerprint`), or the base round and settings of a deep, class or
      fixed-subset round; None: written by an older version (trusted).
  """
  target: DatasetRef
  source: DatasetRef
  search_method: str
  search_seconds: float | None = None
  descriptors_dir: str | None = None
  previous_round: str | None = None
  level_rule: dict | None = None
  level_predictions_accuracy: float | None = None
  inputs: str | None = None

  def to_json(self, folder: str) -> dict:
    """The "info" of selection.json (paths relative to the round folder)."""
    value = {"descriptors_dir": files.relative_to(self.descriptors_dir, folder),
             "search": {"method": self.search_method},
             "target": self.target.to_json(folder, one_split=True),
             "source": self.source.to_json(folder)}
    if self.previous_round:
      value["previous_round"] = files.relative_to(self.previous_round, folder)
    for key in ("level_rule", "level_predictions_accuracy", files.INPUTS_KEY):
      if getattr(self, key) is not None:
        value[key] = getattr(self, key)
    return value

  @classmethod
  def from_json(cls, value: dict, folder: str) -> "Provenance":
    return cls(DatasetRef.from_json(value["target"], folder),
               DatasetRef.from_json(value["source"], folder), value["search"]["method"],
               value["search"].get("seconds"),
               files.resolve(value.get("descriptors_dir"), folder),
               files.resolve(value.get("previous_round"), folder), value.get("level_rule"),
               value.get("level_predictions_accuracy"), value.get(files.INPUTS_KEY))


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A finished sjft-train run, read without loading its model.

  Attributes:
    run_dir: the run folder.
    target_class_names: target-head classes, label = index.
    source_class_names: source-head classes ([] for a target-only run).
    resize_size, crop_size: its images' sizes in pixels (evaluation resizes, then
      centre-crops).
    first_round: the selection round it started from ("" for a target-only run).
    report: train_report.json (counts, images/s, the last epoch's metrics).
  """
  run_dir: str
  target_class_names: list
  source_class_names: list
  resize_size: int
  crop_size: int
  first_round: str
  report: dict

  @property
  def model_path(self) -> str:
    return os.path.join(self.run_dir, MODEL_FILENAME)

  @property
  def last_round(self) -> str:
    """The folder of the last selection round the run trained on (its rounds/ folder's
    last complete round, else the first round)."""
    rounds = os.path.join(self.run_dir, "rounds")
    later = sorted(n for n in os.listdir(rounds) if n.startswith("round_") and
                   os.path.exists(os.path.join(rounds, n, ROUND_FILENAME))) if (
        os.path.isdir(rounds)) else []
    return os.path.join(rounds, later[-1]) if later else self.first_round

  @classmethod
  def read(cls, run_dir: str) -> "TrainedRun":
    """Raises FileNotFoundError naming what a finished run lacks, ValueError naming a
    damaged file."""
    names = (MODEL_FILENAME, TRAIN_REPORT_FILENAME, TRAIN_CONFIG_FILENAME)
    missing = [n for n in names if not os.path.exists(os.path.join(run_dir, n))]
    if missing:
      raise errors.MissingInputError(f"{run_dir} is not a finished sjft-train run: no "
                                     f"{', '.join(missing)}")
    remedy = "rerun sjft-train with the run's flags (it trains the run again)"
    report = files.read_json(os.path.join(run_dir, TRAIN_REPORT_FILENAME), remedy)
    config = files.read_json(os.path.join(run_dir, TRAIN_CONFIG_FILENAME),
                             "its settings are lost: train into a fresh output_dir")
    return cls(run_dir, report["target_class_names"], report["source_class_names"],
               config["pairs"]["resize_size"], config["pairs"]["crop_size"],
               files.resolve(config.get("first_round"), run_dir), report)

  def model_fingerprint(self) -> str:
    """`files.fingerprint` of the model file: what its evaluations and exported
    versions record, so they are reused only for this model. Hashed once per file
    state (size and modification time) for this object."""
    stat = os.stat(self.model_path)
    key = (stat.st_size, stat.st_mtime_ns)
    cached = getattr(self, "_fingerprint_cache", None)
    if cached is None or cached[0] != key:
      cached = (key, files.fingerprint({}, self.model_path))
      object.__setattr__(self, "_fingerprint_cache", cached)
    return cached[1]

  def model_problem(self) -> str | None:
    """None when model.keras is the file training wrote (its fingerprint, recorded in
    the report; a report of an earlier version recorded none: then a zip archive whose
    checks pass); else MODEL_DAMAGED (not a whole Keras archive) or MODEL_REPLACED (a
    whole archive, but not the file the report records: changed after training)."""
    recorded = self.report.get("model_fingerprint")
    if recorded is not None and self.model_fingerprint() == recorded:
      return None
    try:
      with zipfile.ZipFile(self.model_path) as archive:
        whole = archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
      whole = False
    if not whole:
      return MODEL_DAMAGED
    return None if recorded is None else MODEL_REPLACED

  def model_is_whole(self) -> bool:
    """Whether model.keras is the file training wrote (`model_problem` is None)."""
    return self.model_problem() is None

  def load_model(self):
    """The Keras model (target head, and source head if joint).

    Raises:
      ValueError: naming model.keras when it is not the file training wrote
        (`model_problem`: damaged, or replaced), with the way out.
    """
    import keras  # pylint: disable=g-import-not-at-top
    problem = self.model_problem()
    if problem is not None:
      raise errors.InputError(model_problem_message(self.model_path, problem))
    return keras.saving.load_model(self.model_path)
