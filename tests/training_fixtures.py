"""A small joint-training problem on disk: demo images ingested, a selection round made
from a known neighbour table (no descriptor search), and a tiny model configuration."""

import os

import numpy as np

from sjft_tf.data import ingest, pipeline, sources, synthetic
from sjft_tf.data import spec as spec_lib
from sjft_tf import outputs
from sjft_tf.selection import manifest
from sjft_tf.training import model as model_lib
from sjft_tf.training import sampler as sampler_lib

IMAGE_SIZE = 32
TINY_MODEL = model_lib.ModelConfig(base="MobileNet", weights="", input_size=IMAGE_SIZE,
                                   alpha=0.25)
PAIRS = sampler_lib.PairConfig(batch_size=8, resize_size=36, crop_size=IMAGE_SIZE)


def make_problem(root: str, levels=None, k0: int = 3) -> str:
  """Writes target/ and source/ datasets and selection/round_000 under root.

  Args:
    levels: int [targets] round-0 levels (default all 1).
  Returns:
    the round_000 folder.
  """
  synthetic.generate(os.path.join(root, "images"), synthetic.SyntheticConfig(
      image_size=IMAGE_SIZE, source_images_per_class=6, num_target_classes=3,
      target_split_sizes={"train": 4, "test": 2}))
  for role in ("target", "source"):
    ingest.ingest(sources.list_folder(os.path.join(root, "images", role)), ingest.IngestConfig(output_dir=os.path.join(root, role),
                                              dataset_name=f"demo_{role}",
                                              show_progress=False))
  target, source = (spec_lib.load_spec(os.path.join(root, r)) for r in ("target", "source"))
  target_rows = list(_ids_labels(target, "train"))
  source_rows = list(_ids_labels(source, "train"))
  rng = np.random.default_rng(0)
  num_neighbours = 40
  selection = manifest.Selection(
      round_index=0, params=manifest.SelectionParams(k0, num_neighbours, 2),
      provenance=outputs.Provenance(
          outputs.DatasetRef(target.name, target.directory, ("train",)),
          outputs.DatasetRef(source.name, source.directory, ("train",)), "random"),
      target_ids=np.array([i for i, _ in target_rows]),
      target_labels=np.array([label for _, label in target_rows], np.int32),
      levels=(np.ones(len(target_rows), np.int32) if levels is None
              else np.asarray(levels, np.int32)),
      neighbours=np.stack([rng.permutation(len(source_rows))[:num_neighbours]
                           for _ in target_rows]),
      distances=np.tile(np.arange(num_neighbours, dtype=np.float32), (len(target_rows), 1)),
      source_ids=np.array([i for i, _ in source_rows]),
      source_labels=np.array([label for _, label in source_rows], np.int32),
      source_class_names=source.class_names)
  return manifest.save(manifest.derive(selection), os.path.join(root, "selection"))


def _ids_labels(spec, split):
  for ex in pipeline.read_examples(spec, split).as_numpy_iterator():
    yield ex["id"].decode(), int(ex["label"])
