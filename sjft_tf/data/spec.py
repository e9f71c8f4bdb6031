"""The dataset spec: the JSON file that describes a folder of sharded TFRecords.

Every later stage finds its data through this file and nothing else: class names in
label order, and per split the example count, per-class counts and shard files.
"""

import dataclasses
import json
import os
from typing import Any

from sjft_tf import errors, files, integrity

SPEC_FILENAME = "dataset_spec.json"
SPEC_FORMAT_VERSION = 1


@dataclasses.dataclass
class SplitSpec:
  """One split of a dataset.

  Attributes:
    num_examples: examples written to the shards of this split.
    class_counts: examples per class, indexed by label (len == number of classes).
    shards: shard file names, relative to the spec's folder, in read order.
  """
  num_examples: int
  class_counts: list[int]
  shards: list[str]


@dataclasses.dataclass
class DatasetSpec:
  """A dataset written by `sjft_tf.data.ingest`.

  Attributes:
    name: dataset name, stored in every example as `dataset`.
    class_names: class names; the label of a class is its index here.
    splits: split name -> SplitSpec.
    metadata: free-form facts about the dataset (its origin, generator parameters).
    directory: folder holding the spec and the shards (not serialised).
    display_names: readable class names in label order, for reports and figures
      (e.g. "goldfish" for Tiny ImageNet's "n01443537"); None: the class names.
  """
  name: str
  class_names: list[str]
  splits: dict[str, SplitSpec] = dataclasses.field(default_factory=dict)
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
  directory: str = ""
  display_names: list[str] | None = None

  def readable_names(self) -> list[str]:
    """Display names where given, else the class names (label order)."""
    return list(self.display_names or self.class_names)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def shard_paths(self, split: str) -> list[str]:
    """Absolute paths of the shard files of `split`."""
    return [os.path.join(self.directory, s) for s in self.split(split).shards]

  def checked_shard_paths(self, split: str, indices=None) -> list[str]:
    """`shard_paths` (only those at `indices` when given), each checked against its
    ingest record's size (a truncated or grown shard would fail deep inside a reader).
    A damaged shard fails only the readers of that shard.

    Raises:
      FileNotFoundError, ValueError: naming the missing or damaged shard.
    """
    paths = self.shard_paths(split)
    if indices is not None:
      paths = [paths[i] for i in indices]
    for path in paths:
      if not os.path.exists(path):
        raise errors.MissingInputError(f"{path} is missing: rerun sjft-ingest with the same flags")
      try:
        with open(f"{path}.json") as f:
          recorded = json.load(f).get("bytes")
      except FileNotFoundError:
        continue  # datasets written without records (tests, other writers)
      except json.JSONDecodeError as error:
        raise errors.InputError(f"{path}.json is damaged ({error}): rerun sjft-ingest with the "
                                f"same flags (it remakes the shard)") from error
      if recorded is not None and os.path.getsize(path) != recorded:
        raise errors.InputError(f"{path} is damaged ({os.path.getsize(path)} bytes, its ingest "
                                f"record says {recorded}): rerun sjft-ingest with the same flags "
                                f"(it remakes the shard)")
    return paths

  def damaged_shards(self, split: str) -> list[str]:
    """Shards of `split` whose bytes are not those their ingest record describes (size,
    then SHA-1 where recorded), or that are missing: hashes every shard, so it is
    what a reader calls once a read has failed, to name the file."""
    damaged = []
    for path in self.shard_paths(split):
      try:
        record = files.read_json(f"{path}.json")
      except FileNotFoundError:
        record = {}
      except ValueError:
        damaged.append(f"{path}.json")
        continue
      if not shard_matches_record(path, record.get("bytes"), record.get("sha1")):
        damaged.append(path)
    return damaged

  def split(self, split: str) -> SplitSpec:
    if split not in self.splits:
      raise KeyError(
          f"split {split!r} is not in {os.path.join(self.directory, SPEC_FILENAME)} "
          f"(it has: {sorted(self.splits)})")
    return self.splits[split]

  def split_fingerprint(self, split: str) -> str:
    """What identifies the images of `split` (`files.fingerprint`): the classes, the
    split's counts and shards, and each shard's ingest record (`<shard>.json`: the
    hash of the listing it came from, its record range, skipped images). Cheap at any
    size, and unchanged when the folder moves."""
    records = [f"{p}.json" for p in self.shard_paths(split) if os.path.exists(f"{p}.json")]
    for record in records:  # a damaged record is named, not taken for other images
      files.read_json(record, "rerun sjft-ingest with the same flags (it remakes the shard)")
    return files.fingerprint({"class_names": self.class_names,
                              "split": dataclasses.asdict(self.split(split))}, *records)

  def to_json_dict(self) -> dict[str, Any]:
    payload = {
        "format_version": SPEC_FORMAT_VERSION,
        "name": self.name,
        "class_names": list(self.class_names),
        "splits": {k: dataclasses.asdict(v) for k, v in sorted(self.splits.items())},
        "metadata": self.metadata,
    }
    if self.display_names:
      payload["display_names"] = list(self.display_names)
    return payload


def read_display_names(path: str, class_names: list[str]) -> list[str]:
  """Readable names from a two-column TSV file (class name, display name).

  Rows whose first column is not a class (a header such as "wnid<TAB>words") are
  ignored; a class without a row keeps its class name. Tiny ImageNet's classes.tsv and
  ImageNet's words.txt have this form.
  Raises:
    ValueError: the file names none of the classes.
  """
  readable = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      name, _, display = line.rstrip("\n").partition("\t")
      if display.strip():
        readable[name.strip()] = display.strip()
  if not set(readable) & set(class_names):
    raise errors.InputError(f"{path}: no row names one of the {len(class_names)} classes "
                            f"(expected lines 'class name<TAB>display name', e.g. "
                            f"'{class_names[0]}<TAB>...')")
  return [readable.get(name, name) for name in class_names]


def shard_matches_record(path: str, size: int | None, sha1: str | None) -> bool:
  """Whether a shard file is the one its ingest record describes: present, of the
  recorded size, then of the recorded SHA-1 (records of earlier versions lack one or
  both, which then count as matching)."""
  return os.path.exists(path) and (size is None or os.path.getsize(path) == size) and (
      not sha1 or integrity.sha1_file(path) == sha1)


def spec_path(directory: str) -> str:
  return os.path.join(directory, SPEC_FILENAME)


def load_spec(directory_or_file: str) -> DatasetSpec:
  """Reads a spec from its folder or from the JSON file itself."""
  path = directory_or_file
  if os.path.isdir(path):
    path = spec_path(path)
  raw = files.read_versioned_json(path, SPEC_FORMAT_VERSION, "sjft-ingest")
  return DatasetSpec(
      name=raw["name"],
      class_names=list(raw["class_names"]),
      splits={k: SplitSpec(**v) for k, v in raw["splits"].items()},
      metadata=raw.get("metadata", {}),
      directory=os.path.dirname(os.path.abspath(path)),
      display_names=raw.get("display_names"),
  )


def save_spec(spec: DatasetSpec) -> str:
  """Writes the spec into `spec.directory`; returns the file's path."""
  os.makedirs(spec.directory, exist_ok=True)
  path = spec_path(spec.directory)
  files.write_json_atomic(path, spec.to_json_dict())
  return path
