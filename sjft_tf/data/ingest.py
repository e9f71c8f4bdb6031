"""Writes a listed image collection as sharded TFRecords plus a dataset spec.

Output folder:
  dataset_spec.json                         classes, per-split counts and shard files
  <split>-00000-of-00004.tfrecord           the examples (format: sjft_tf.data.tfrecord)
  <split>-00000-of-00004.tfrecord.json      that shard's counts and skipped files
  ingest_report.json                        every skipped input with its reason

Nothing is lost and nothing is half-written: a shard and its stats are written under a
temporary name and renamed when complete (stats last), so a rerun after an interruption
skips the complete shards and produces byte-identical output. Bad images are skipped
and reported, never fatal; structural problems (missing root, empty class, a class list
that disagrees with the spec already in the folder) are errors.
"""

import collections
import concurrent.futures
import dataclasses
import glob
import json
import logging
import math
import os

import tensorflow as tf
from tqdm import tqdm

from sjft_tf import bounds, errors, files, integrity
from sjft_tf.data import spec as spec_lib
from sjft_tf.data import tfrecord
from sjft_tf.data.images import ImageError, normalize_image
from sjft_tf.data.sources import ImageRecord, ListedSource, SplitPlan

REPORT_FILENAME = "ingest_report.json"


@dataclasses.dataclass
class IngestConfig:
  """How to write the dataset.

  Attributes:
    output_dir: folder for the spec, shards and report.
    dataset_name: stored in the spec and in every example (the command line's
      default: the output folder's name).
    max_side: longest image side in pixels after ingestion; None or 0 keeps sizes.
    jpeg_quality: quality of re-encoded JPEGs (1-95).
    shard_size: examples listed per shard (bad ones are skipped from it).
    num_workers: decoding threads; 0 means one per CPU core.
    show_progress: draw a tqdm progress bar.
    display_names_file: TSV of class name<TAB>readable name (spec.read_display_names),
      stored in the spec for reports and figures; "" for none.
  """
  output_dir: str
  dataset_name: str
  max_side: int | None = bounds.field(None, lower=0)
  jpeg_quality: int = dataclasses.field(
      default=95, metadata={"flag": {"lower_bound": 1, "upper_bound": 95}})
  shard_size: int = dataclasses.field(default=1024, metadata={"flag": {"lower_bound": 1}})
  num_workers: int = dataclasses.field(default=0, metadata={"flag": {"lower_bound": 0}})
  show_progress: bool = True
  display_names_file: str = ""

  def __post_init__(self):
    bounds.check(self)


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


@dataclasses.dataclass
class _ShardResult:
  """What one shard holds; stored beside it as `<shard>.json`."""
  fingerprint: str
  record_range: list[int]
  num_examples: int
  class_counts: list[int]
  skipped: list[dict[str, str]]
  converted: dict[str, int]
  bytes: int | None = None  # the shard file's size (records of earlier versions: None)
  sha1: str | None = None  # its SHA-1 (integrity.py; records of earlier versions: None)


def _process(record: ImageRecord, config: IngestConfig):
  """Reads and normalises one image; returns the image or the ImageError."""
  try:
    return normalize_image(record.read_bytes(), config.max_side, config.jpeg_quality)
  except ImageError as e:
    return e


def _read_stats(stats_path: str) -> _ShardResult:
  return _ShardResult(**files.read_json(stats_path))


def _check_earlier_shards(output_dir: str, split: str, fingerprint: str,
                          planned: dict[str, list[int]]) -> None:
  """Refuses to mix shards of another input listing or shard size into one split."""
  for stats_path in sorted(glob.glob(os.path.join(output_dir, f"{split}-*-of-*.tfrecord.json"))):
    name = os.path.basename(stats_path)[:-len(".json")]
    try:
      earlier = _read_stats(stats_path)
    except (ValueError, TypeError):
      continue  # a damaged record: its shard is written again
    if earlier.fingerprint != fingerprint or planned.get(name) != earlier.record_range:
      raise errors.InputError(
          f"{stats_path[:-5]} was written from a different input listing or shard size "
          f"(records {earlier.record_range} of listing {earlier.fingerprint[:12]}; this "
          f"run lists {fingerprint[:12]}): the inputs changed since; ingest into a new "
          f"folder or delete the split's old shards")


def _load_complete_shard(path: str) -> _ShardResult | None:
  """The record of a whole shard at `path`; None when it is missing or damaged (its
  size is not the recorded one, or its record does not parse): it is written again."""
  if not (os.path.exists(path) and os.path.exists(path + ".json")):
    return None
  try:
    stats = _read_stats(path + ".json")
  except (ValueError, TypeError):
    os.remove(path + ".json")  # remade with its shard
    return None
  # Another size, or the same size and other bytes (overwritten): written again.
  return stats if spec_lib.shard_matches_record(path, stats.bytes, stats.sha1) else None


def _write_shard(path: str, record_range: list[int], split: str, plan: SplitPlan,
                 class_index: dict[str, int], config: IngestConfig,
                 pool: concurrent.futures.Executor, progress: tqdm) -> _ShardResult:
  """Writes one shard under a temporary name, then renames it and its stats."""
  records = list(plan.read_range(*record_range))
  class_counts = [0] * len(class_index)
  skipped, converted = [], collections.Counter()
  with files.atomic_path(path) as tmp_path, tf.io.TFRecordWriter(tmp_path) as writer:
    for record, result in zip(records, pool.map(lambda r: _process(r, config), records)):
      progress.update(1)
      if isinstance(result, ImageError):
        skipped.append({"split": split, "id": record.example_id,
                        "path": record.path or record.example_id, "reason": result.reason})
        continue
      if result.converted_from:
        converted[result.converted_from] += 1
      label = class_index[record.class_name]
      class_counts[label] += 1
      writer.write(tfrecord.serialize_example(
          encoded=result.encoded, image_format=result.format, height=result.height,
          width=result.width, label=label, class_name=record.class_name,
          example_id=record.example_id, dataset=config.dataset_name))
  shard = _ShardResult(plan.fingerprint, record_range, sum(class_counts), class_counts, skipped,
                       dict(sorted(converted.items())), os.path.getsize(path),
                       integrity.sha1_file(path))
  files.write_json_atomic(path + ".json", dataclasses.asdict(shard))
  return shard


def _check_classes(existing: spec_lib.DatasetSpec | None, class_names: list[str],
                   output_dir: str) -> None:
  if existing is None or existing.class_names == class_names:
    return
  missing = sorted(set(existing.class_names) - set(class_names))
  extra = sorted(set(class_names) - set(existing.class_names))
  detail = (f"missing {missing[:10]}, new {extra[:10]}" if missing or extra
            else "same names in another order")
  raise errors.InputError(
      f"{spec_lib.spec_path(output_dir)} lists {len(existing.class_names)} classes and "
      f"this input has {len(class_names)} ({detail}); ingest into a new folder")


def _earlier_spec(output_dir: str) -> spec_lib.DatasetSpec | None:
  """The folder's spec from an earlier run, or None: none there, or a damaged one (made
  again from this run's shards, said by name; the splits only it listed are lost)."""
  path = spec_lib.spec_path(output_dir)
  if not os.path.exists(path):
    return None
  try:
    return spec_lib.load_spec(output_dir)
  except ValueError as error:
    if "is damaged" not in str(error):
      raise
    logging.warning("%s is damaged: made again from this run's splits (a split only it "
                    "listed must be ingested again)", path)
    return None


def ingest(source: ListedSource, config: IngestConfig) -> spec_lib.DatasetSpec:
  """Writes `source` into `config.output_dir`; resumes where an earlier run stopped.

  Splits already in the folder's spec and not in `source` are kept.

  Returns:
    The dataset spec, also written to `output_dir/dataset_spec.json`.
  Raises:
    ValueError: the class list disagrees with an existing spec, a class ends with no
      readable image, or the folder holds shards of a different input.
  """
  # Over 60 lines: the resumable pass in order (earlier spec, listing check, per-shard
  # reuse, decode and write, report); each kill point is visible in one place.
  output_dir = config.output_dir
  display_names = (spec_lib.read_display_names(config.display_names_file, source.class_names)
                   if config.display_names_file else None)
  os.makedirs(output_dir, exist_ok=True)
  existing = _earlier_spec(output_dir)
  _check_classes(existing, source.class_names, output_dir)
  files.remove_stale_temporaries(output_dir)
  class_index = {name: i for i, name in enumerate(source.class_names)}
  splits = dict(existing.splits) if existing else {}
  report_path = os.path.join(output_dir, REPORT_FILENAME)
  report = {"skipped": {}, "converted": {}}
  if os.path.exists(report_path):
    try:  # a damaged report is written again from the shards' records
      report = files.read_json(report_path)
    except ValueError:
      logging.warning("%s is damaged: written again from the shards' records", report_path)

  total = sum(plan.num_records for plan in source.splits.values())
  workers = config.num_workers or os.cpu_count() or 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
      tqdm(total=total, unit="img", desc=f"ingest {config.dataset_name}",
           disable=not config.show_progress) as progress:
    for split, plan in source.splits.items():
      num_shards = max(1, math.ceil(plan.num_records / config.shard_size))
      planned = {shard_name(split, i, num_shards):
                 [i * config.shard_size, min(plan.num_records, (i + 1) * config.shard_size)]
                 for i in range(num_shards)}
      _check_earlier_shards(output_dir, split, plan.fingerprint, planned)
      shards, results = [], []
      for name, record_range in planned.items():
        path = os.path.join(output_dir, name)
        result = _load_complete_shard(path)
        if result is None:
          result = _write_shard(path, record_range, split, plan, class_index, config, pool,
                                progress)
        else:
          progress.update(record_range[1] - record_range[0])
        shards.append(name)
        results.append(result)
      class_counts = [sum(c) for c in zip(*(r.class_counts for r in results))]
      splits[split] = spec_lib.SplitSpec(sum(class_counts), class_counts, shards)
      report["skipped"][split] = [s for r in results for s in r.skipped]
      converted = collections.Counter()
      for r in results:
        converted.update(r.converted)
      report["converted"][split] = dict(sorted(converted.items()))
      logging.info("%s/%s: %d examples in %d shards, %d inputs skipped", config.dataset_name,
                   split, splits[split].num_examples, num_shards,
                   len(report["skipped"][split]))

  totals = [sum(c) for c in zip(*(s.class_counts for s in splits.values()))]
  empty = [name for name, count in zip(source.class_names, totals) if count == 0]
  # Hidden files and folders (.DS_Store, ._x.jpg, .git) are not inputs: listed, not read.
  report["ignored_hidden"] = source.metadata.get("input", {}).get("ignored_hidden", [])
  files.write_json_atomic(report_path, report)
  if empty:
    # Shards that hold nothing would be taken as complete by the rerun after the fix.
    for split_spec in splits.values():
      for name in split_spec.shards:
        path = os.path.join(output_dir, name)
        result = _load_complete_shard(path)
        if result is not None and not sum(result.class_counts):
          for leftover in (path, path + ".json"):
            os.remove(leftover)
    raise errors.InputError(f"empty class: no readable image for {empty[:10]} "
                            f"(see {report_path} for the skipped files)")
  metadata = dict(existing.metadata) if existing else {}
  metadata.update(source.metadata)
  spec = spec_lib.DatasetSpec(config.dataset_name, source.class_names, splits, metadata,
                              os.path.abspath(output_dir),
                              display_names or (existing and existing.display_names))
  spec_lib.save_spec(spec)
  return spec


def skipped_inputs(output_dir: str) -> list[dict[str, str]]:
  """Every input skipped by ingestion into `output_dir`, all splits together."""
  with open(os.path.join(output_dir, REPORT_FILENAME)) as f:
    report = json.load(f)
  return [item for items in report["skipped"].values() for item in items]
