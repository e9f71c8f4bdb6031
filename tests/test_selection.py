"""Source selection: exact and approximate search, manifest, levels, subset, CLI."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf import outputs
from sjft_tf.data import ingest, pipeline, sources, spec as spec_lib, synthetic
from sjft_tf.descriptors import extract, store
from sjft_tf.selection import (budget, divergence, embedding, exact, index, levels, manifest,
                               search, select)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _histograms(rng, n, channels=4, bins=8, concentration=0.5):
  raw = rng.gamma(concentration, 1.0, size=(n, channels, bins)) + 1e-3
  return (raw / raw.sum(-1, keepdims=True)).reshape(n, channels * bins).astype(np.float32)


def _naive(t, s, w, eps=divergence.DEFAULT_EPSILON):
  t, s = t.astype(np.float64), s.astype(np.float64)
  return 0.5 * sum(w[k] * (t[k] * np.log((t[k] + eps) / (s[k] + eps))
                           + s[k] * np.log((s[k] + eps) / (t[k] + eps))) for k in range(len(t)))


def test_exact_search_equals_a_naive_per_pair_loop():
  rng = np.random.default_rng(0)
  targets, sources_ = _histograms(rng, 7), _histograms(rng, 53)
  weights = np.repeat(rng.uniform(0.1, 1, 4), 8).astype(np.float32)
  naive = np.array([[_naive(t, s, weights) for s in sources_] for t in targets])
  blocks = [sources_[i:i + 10] for i in range(0, 53, 10)]
  distances, indices = exact.exact_search(targets, blocks, weights, k=5, target_batch=3)
  np.testing.assert_array_equal(indices, np.argsort(naive, axis=1, kind="stable")[:, :5])
  np.testing.assert_allclose(distances, np.sort(naive, axis=1)[:, :5], rtol=1e-4, atol=1e-6)
  rows = rng.integers(0, 53, size=(7, 6))
  pairs = divergence.divergence_to_rows(divergence.prepare(targets, weights),
                                        divergence.prepare(sources_, weights, weighted=False),
                                        rows)
  np.testing.assert_allclose(pairs, np.take_along_axis(naive, rows, 1), rtol=1e-4, atol=1e-6)


def test_scann_with_rerank_finds_planted_neighbours_and_reloads(tmp_path):
  rng = np.random.default_rng(1)
  targets = _histograms(rng, 40, channels=6, bins=16)
  weights = np.full(96, 1 / 6, np.float32)
  # Five planted near-copies of every target among 4,000 unrelated histograms.
  planted = np.repeat(targets, 5, axis=0) * rng.uniform(0.9, 1.1, (200, 96)).astype(np.float32)
  planted /= planted.reshape(200, 6, 16).sum(-1).repeat(16, -1)
  database = np.concatenate([_histograms(rng, 4000, 6, 16), planted])
  owner = np.concatenate([np.full(4000, -1), np.repeat(np.arange(40), 5)])
  projection = embedding.fit(database, weights, dimensions=32)
  config = index.IndexConfig(dimensions=32)
  searcher = index.build(projection.embed(database), config, 20)
  index.save(str(tmp_path / "index"), searcher, projection, config, len(database))
  reloaded, reloaded_projection = index.load(str(tmp_path / "index"))
  before = index.candidates(searcher, projection.embed(targets), 20)
  after = index.candidates(reloaded, reloaded_projection.embed(targets), 20)
  np.testing.assert_array_equal(before, after)

  # In-graph use: the saved module's searcher inside a tf.function.
  import tensorflow as tf
  from scann.scann_ops.py import scann_ops
  module = tf.saved_model.load(str(tmp_path / "index" / index.SEARCHER_DIRNAME))

  @tf.function(input_signature=[tf.TensorSpec([None, 32], tf.float32)])
  def in_graph(queries):
    return scann_ops.searcher_from_module(module).search_batched(queries, 20)[0]

  np.testing.assert_array_equal(in_graph(projection.embed(targets)).numpy(), before)
  blocks = [database[i:i + 1000] for i in range(0, len(database), 1000)]
  distances, found = index.rerank(targets, after, blocks, weights, k=5)
  recall = np.mean([np.isin(np.nonzero(owner == i)[0], found[i]).mean() for i in range(40)])
  assert recall >= 0.95
  exact_d, exact_i = exact.exact_search(targets, blocks, weights, k=5)
  hit = found == exact_i
  # float32: self terms near -2 cancel to distances near 1e-3, summed in other orders.
  np.testing.assert_allclose(distances[hit], exact_d[hit], atol=2e-6)


def test_level_update_rule():
  probabilities = np.array([[0.9, 0.05, 0.05],    # correct, confident -> +0
                            [0.2, 0.7, 0.1],      # wrong -> +4
                            [0.4, 0.35, 0.25],    # correct, uncertain -> +2
                            [0.1, 0.8, 0.1]])     # wrong, capped
  labels = np.array([0, 0, 0, 0])
  new = levels.update_levels(np.array([1, 1, 3, 9]), probabilities, labels)
  np.testing.assert_array_equal(new, [1, 5, 5, 10])
  assert levels.normalised_entropy(np.full((1, 4), 0.25))[0] == pytest.approx(1.0)


def _selection(rng, k0=3, min_images=2):
  num_sources, num_targets = 60, 8
  neighbours = np.stack([rng.permutation(num_sources)[:20] for _ in range(num_targets)])
  selection = manifest.Selection(
      round_index=0, params=manifest.SelectionParams(k0, 20, min_images),
      provenance=outputs.Provenance(outputs.DatasetRef("t", "t", ("train",)),
                                    outputs.DatasetRef("s", "s", ("train",)), "exact"),
      target_ids=np.array([f"t{i}" for i in range(num_targets)]),
      target_labels=np.zeros(num_targets, np.int32),
      levels=rng.integers(1, 4, num_targets).astype(np.int32), neighbours=neighbours,
      distances=np.sort(rng.random((num_targets, 20)), 1).astype(np.float32),
      source_ids=np.array([f"s{j}" for j in range(num_sources)]),
      source_labels=(np.arange(num_sources) % 7).astype(np.int32),
      source_class_names=[f"c{c}" for c in range(7)])
  return manifest.derive(selection)


def test_weights_match_a_monte_carlo_of_the_pairing_rule():
  rng = np.random.default_rng(2)
  selection = _selection(rng)
  assert selection.weights.sum() == pytest.approx(1.0)
  pools = selection.pools()
  draws = 200000
  share = selection.levels / selection.levels.sum()
  targets = rng.choice(len(pools), size=draws, p=share)
  counts = np.zeros(len(selection.source_ids))
  for t, n in zip(*np.unique(targets, return_counts=True)):
    picks = rng.integers(0, len(pools[t]), n)
    np.add.at(counts, pools[t][picks], 1)
  empirical = counts[selection.selected] / draws
  # Binomial standard error at 200,000 draws is below 0.0011 for any weight.
  np.testing.assert_allclose(empirical, selection.weights, atol=0.005)
  assert counts.sum() == draws and set(np.nonzero(counts)[0]) == set(selection.selected)


def test_rare_source_classes_leave_the_pools_and_labels_are_contiguous():
  rng = np.random.default_rng(3)
  selection = _selection(rng, k0=1, min_images=3)
  kept = {selection.source_class_names.index(c) for c in selection.retained_classes}
  assert all(selection.source_labels[j] in kept for p in selection.pools() for j in p)
  # Head labels index the run's head classes (reachable at max_level), which hold
  # this round's retained classes.
  heads = {selection.source_class_names.index(c) for c in selection.head_classes}
  assert kept <= heads and selection.head_classes == [
      n for c, n in enumerate(selection.source_class_names) if c in heads]
  for j, head in zip(selection.selected, selection.head_labels):
    name = selection.source_class_names[selection.source_labels[j]]
    assert selection.head_classes[head] == name


def test_derive_returns_a_copy_and_leaves_its_argument_as_it_is():
  selection = _selection(np.random.default_rng(5))
  selected, pool_sizes = selection.selected.copy(), selection.pool_sizes.copy()
  grown = manifest.derive(dataclasses.replace(selection, levels=selection.levels + 2))
  np.testing.assert_array_equal(selection.selected, selected)
  np.testing.assert_array_equal(selection.pool_sizes, pool_sizes)
  assert (grown.pool_sizes >= selection.pool_sizes).all() and set(selected) <= set(
      grown.selected)


def test_selection_files_round_trip(tmp_path):
  selection = _selection(np.random.default_rng(4))
  folder = manifest.save(selection, str(tmp_path))
  assert folder.endswith("round_000")
  again = manifest.load(folder)
  for name in ("levels", "neighbours", "selected", "weights", "head_labels", "source_ids"):
    np.testing.assert_array_equal(getattr(again, name), getattr(selection, name))
  assert again.retained_classes == selection.retained_classes
  assert again.head_classes == selection.head_classes
  assert again.params == selection.params


@pytest.fixture(scope="module")
def descriptor_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("selection")
  synthetic.generate(str(root / "images"), synthetic.SyntheticConfig(
      source_images_per_class=6, num_target_classes=3,
      target_split_sizes={"train": 4}))
  ingest.ingest(sources.list_folder(str(root / "images" / "target")), ingest.IngestConfig(
      output_dir=str(root / "target"), dataset_name="demo_target", show_progress=False))
  # A source of two splits, both described: selections and subsets span them.
  ingest.ingest(sources.list_folder(str(root / "images" / "source" / "train"), layout="class",
                                    split_fractions="train=0.7,val=0.3"),
                ingest.IngestConfig(output_dir=str(root / "source"), dataset_name="demo_source",
                                    shard_size=40, show_progress=False))
  config = extract.ExtractionConfig(output_dir=str(root / "descriptors"),
                                    bank=extract.BankConfig(kind="gabor"), resize_size=64,
                                    crop_size=64, lookup_cells=1024, show_progress=False)
  extract.extract(config, str(root / "target"), str(root / "source"),
                  source_splits=("train", "val"))
  return str(root / "descriptors")


def test_the_descriptor_folder_names_its_datasets(descriptor_dir):
  described = outputs.DescriptorSet.read(descriptor_dir)
  source = described.dataset("source")
  assert (source.dataset, source.splits) == ("demo_source", ("train", "val"))
  assert described.dataset("target", "train").split == "train"
  with pytest.raises(ValueError, match=f"{descriptor_dir}: no target descriptors for split test"):
    described.dataset("target", "test")


def test_initial_selection_and_update_write_readable_subsets(descriptor_dir, tmp_path):
  params = manifest.SelectionParams(k0=4, max_neighbours=30, min_images_per_class=1)
  first, folder = select.initial_selection(descriptor_dir, str(tmp_path), params,
                                           search.SearchConfig(method="exact"))
  assert first.neighbours.shape == (12, 30) and (first.pool_sizes == 4).all()
  subset = spec_lib.load_spec(os.path.join(folder, "subset"))
  assert subset.class_names == first.head_classes
  read = {ex["id"].decode(): int(ex["label"])
          for ex in pipeline.read_examples(subset, "train").as_numpy_iterator()}
  assert read == dict(zip(first.source_ids[first.selected].tolist(),
                          first.head_labels.tolist()))
  # Rerunning round 0 with other pools into the same folder rewrites the subset, even
  # where the new selection happens to hold as many images.
  from sjft_tf.selection import subset as subset_lib
  source_spec_dir = first.provenance.source.spec_dir
  relabelled = dict(zip(first.source_ids[first.selected].tolist(),
                        (first.head_labels[::-1]).tolist()))
  rewritten = subset_lib.write_subset(source_spec_dir,
                                      ["train", "val"], relabelled, first.head_classes,
                                      os.path.join(folder, "subset"), "again")
  assert rewritten.name == "again"
  assert {ex["id"].decode(): int(ex["label"]) for ex in
          pipeline.read_examples(rewritten, "train").as_numpy_iterator()} == relabelled
  assert subset_lib.write_subset(source_spec_dir, ["train", "val"], relabelled,
                                 first.head_classes, os.path.join(folder, "subset"),
                                 "reused").name == "again"
  assert first.provenance.source.splits == ("train", "val")
  source_spec = first.provenance.source.spec_dir
  both_splits = {ex["id"].decode() for split in ("train", "val")
                 for ex in pipeline.read_examples(source_spec, split).as_numpy_iterator()}
  assert set(first.source_ids.tolist()) == both_splits and len(both_splits) == 126

  # Targets 0-5 misclassified (level 5: pools of 20), the rest confidently right.
  probabilities = np.eye(3)[first.target_labels]
  probabilities[:6] = np.eye(3)[(first.target_labels[:6] + 1) % 3]
  second, folder2 = select.next_round(folder, first.target_ids, probabilities)
  assert folder2.endswith("round_001")
  np.testing.assert_array_equal(second.levels, [5] * 6 + [1] * 6)
  assert (second.pool_sizes[:6] == 20).all() and (second.pool_sizes[6:] == 4).all()
  assert set(first.selected) <= set(second.selected)
  np.testing.assert_array_equal(second.neighbours, first.neighbours)  # no new search
  with pytest.raises(ValueError, match="predictions lack 12 target images"):
    select.next_round(folder, np.array(["nobody"]), probabilities[:1])


def test_round_zero_is_reused_only_when_made_the_same_way(descriptor_dir, tmp_path):
  params = manifest.SelectionParams(k0=4, max_neighbours=30, min_images_per_class=1)
  exact = search.SearchConfig(method="exact")
  first, folder = select.initial_selection(descriptor_dir, str(tmp_path), params, exact,
                                           write_subset=False)
  stamp = os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME))
  again, _ = select.initial_selection(descriptor_dir, str(tmp_path), params, exact,
                                      write_subset=False)
  assert again.provenance == first.provenance  # the search's recorded time too: nothing was redone
  assert os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME)) == stamp
  wider = manifest.SelectionParams(k0=6, max_neighbours=30, min_images_per_class=1)
  changed, _ = select.initial_selection(descriptor_dir, str(tmp_path), wider, exact,
                                        write_subset=False)
  assert (changed.pool_sizes == 6).all() and manifest.load(folder).params == wider
  # Descriptors made again from other images (their fingerprint changed) are searched
  # again; descriptors_dir's own round 0 records the fingerprint it searched.
  copy = shutil.copytree(descriptor_dir, tmp_path / "descriptors")
  _, folder = select.initial_selection(str(copy), str(tmp_path / "s"), params, exact,
                                       write_subset=False)
  made = manifest.load(folder).provenance.inputs
  assert made == outputs.DescriptorSet.read(str(copy)).fingerprint("train")
  metadata = json.loads((copy / store.METADATA_FILENAME).read_text())
  metadata["datasets"][-1]["inputs"] = "0" * 40
  (copy / store.METADATA_FILENAME).write_text(json.dumps(metadata))
  stamp = os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME))
  again, _ = select.initial_selection(str(copy), str(tmp_path / "s"), params, exact,
                                      write_subset=False)
  assert os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME)) > stamp
  assert again.provenance.inputs not in (None, made)


def test_scann_search_agrees_with_exact_on_real_descriptors(descriptor_dir):
  targets = store.load_all(descriptor_dir, "target").descriptors
  config = search.SearchConfig(method="exact", num_neighbours=10)
  truth = search.find(descriptor_dir, targets, 126, config)
  config.method = "scann"
  # One partition: ScaNN's k-means is not deterministic, and on 126 sources one
  # neighbour more or less moves recall by 0.008 (the tree is tested above).
  config.index = index.IndexConfig(dimensions=16, candidates_per_neighbour=4, num_leaves=1)
  found = search.find(descriptor_dir, targets, 126, config)
  recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth.indices, found.indices)])
  assert recall >= 0.9, recall


def test_cli_initial_and_update(descriptor_dir, tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  tool = os.path.join(os.path.dirname(sys.executable), "sjft-select")
  done = subprocess.run([tool, f"--descriptors_dir={descriptor_dir}",
                         f"--output_dir={tmp_path}", "--k0=3", "--max_neighbours=20",
                         "--min_images_per_class=1"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "12 target images, levels 1: 12" in done.stdout and "search: exact" in done.stdout
  first = manifest.load(str(tmp_path / "round_000"))
  probabilities = np.full((12, 3), 1 / 3)  # all uncertain; argmax 0 is right for label 0
  np.savez(tmp_path / "predictions.npz", ids=first.target_ids, probabilities=probabilities)
  done = subprocess.run([tool, f"--previous_round={tmp_path / 'round_000'}",
                         f"--predictions={tmp_path / 'predictions.npz'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  second = manifest.load(str(tmp_path / "round_001"))
  expected = np.where(first.target_labels == 0, 3, 5)  # uncertain+right: +2, wrong: +4
  np.testing.assert_array_equal(second.levels, expected)
  assert "round 1" in done.stdout


def test_cli_deep_and_class_rounds_follow_their_settings(descriptor_dir, tmp_path):
  """sjft-select --method=classes|deep (in process): a rerun into the same folder with
  another budget or K0 makes the round again instead of returning the stored one."""
  from sjft_tf.cli import runner, select as select_cli
  flagfile = tmp_path / "select.flags"
  flagfile.write_text(f"--descriptors_dir={descriptor_dir}\n--max_neighbours=20\n"
                      "--min_images_per_class=1\n--feature_weights=\n"
                      "--feature_input_size=32\n--feature_batch_size=64\n")
  classes = str(tmp_path / "classes")
  counts = []
  for images in (10, 40):
    runner.run_stage(select_cli, str(flagfile), "--method=classes", f"--output_dir={classes}",
                     f"--budget_images={images}")
    selection = manifest.load(os.path.join(classes, "round_000"))
    assert selection.provenance.search_method == "deep_class_means"
    assert len(np.unique(selection.neighbours, axis=0)) == 1  # one pool: whole classes
    counts.append(len(selection.selected))
  assert counts[0] >= 10 and counts[1] >= 40 > counts[0]
  deep = str(tmp_path / "deep")
  for k0 in (2, 4):
    runner.run_stage(select_cli, str(flagfile), "--method=deep", f"--output_dir={deep}",
                     f"--k0={k0}")
    selection = manifest.load(os.path.join(deep, "round_000"))
    assert selection.provenance.search_method.startswith("deep_cosine")
    assert (selection.pool_sizes == k0).all()
  # The filter-bank round the others are made over, and the cached features, are kept.
  assert os.path.exists(os.path.join(deep, "filter_bank", "round_000", "selection.json"))
  # Target train, source train and val: computed once, read by the second call.
  assert len(os.listdir(os.path.join(deep, "features"))) == 3
  # --budget_images means what it means in sjft-reproduce for every method: the
  # ranked round's pools at the smallest K0 that reaches it, no second search.
  for method in ("filter_bank", "deep"):
    folder = str(tmp_path / f"{method}_budget")
    runner.run_stage(select_cli, str(flagfile), f"--method={method}", "--k0=1",
                     f"--output_dir={folder}", "--budget_images=16")
    ranked = manifest.load(os.path.join(folder, "ranked", "round_000"))
    selection = manifest.load(os.path.join(folder, "round_000"))
    k0 = selection.params.k0
    assert k0 == budget.k0_for_images(ranked.neighbours, 16) > 1
    assert len(selection.selected) >= 16 > len(np.unique(ranked.neighbours[:, :k0 - 1]))
    np.testing.assert_array_equal(selection.neighbours, ranked.neighbours)
    assert selection.provenance.search_method == ranked.provenance.search_method
    assert os.path.exists(os.path.join(folder, "round_000", "subset", "dataset_spec.json"))


def test_merge_top_k_cuts_ties_at_the_kth_distance_by_index_in_any_order():
  from sjft_tf.selection import exact as exact_lib
  distances = np.array([[0.5, 0.2, 0.5, 0.5, 0.1, 0.5]], np.float32)
  indices = np.array([[40, 7, 3, 90, 12, 5]], np.int64)
  rng = np.random.default_rng(0)
  for _ in range(20):
    order = rng.permutation(6)
    first, second = order[:3], order[3:]
    kept = exact_lib.merge_top_k(distances[:, first], indices[:, first],
                                 distances[:, second], indices[:, second], 4)
    np.testing.assert_array_equal(kept[1], [[12, 7, 3, 5]])
    np.testing.assert_array_equal(kept[0], np.float32([[0.1, 0.2, 0.5, 0.5]]))
