"""Selection by deep features: budgets, class ranking, ScaNN's dot-product search, and the
rows of the ablation that use them."""

import os

import numpy as np
import pytest

from sjft_tf.data import spec as spec_lib
from sjft_tf.experiments import ablation
from sjft_tf.selection import budget, manifest, semantic
from sjft_tf.training import train as train_lib
import training_fixtures as fx


def _unit(rows):
  rows = np.asarray(rows, np.float64)
  return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_classes_are_ranked_by_their_mean_and_taken_whole_up_to_the_budget():
  rng = np.random.default_rng(0)
  directions = _unit(rng.normal(size=(4, 16)))
  target_labels = np.array([0, 0, 1, 1])
  target = _unit(directions[[0, 0, 1, 1]] + 0.05 * rng.normal(size=(4, 16)))
  # Source class 2 is target class 0's direction, class 0 target class 1's, 1 and 3 far.
  source_labels = np.repeat([0, 1, 2, 3], 5)
  source_directions = np.stack([directions[1], directions[2], directions[0], directions[3]])
  source = _unit(source_directions[source_labels] + 0.05 * rng.normal(size=(20, 16)))
  order, scores = semantic.rank_source_classes(target, target_labels, source, source_labels, 5)
  assert list(order[:2]) in ([2, 0], [0, 2]) and scores[4] == -np.inf
  rows, taken = budget.class_rows(order, source_labels, 6)
  assert taken == [int(c) for c in order[:2]]
  np.testing.assert_array_equal(rows, np.nonzero(np.isin(source_labels, taken))[0])
  assert len(budget.class_rows(order, source_labels, 5)[0]) == 5


def test_scann_dot_product_search_finds_the_exact_cosine_neighbours():
  # Clustered like real features (on Pets x Tiny ImageNet pooled MobileNet features,
  # 370 x 30,000, recall@100 is 0.973); uniform random directions are a worst case.
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(30, 32))
  sources = _unit(centres[rng.integers(0, 30, 3000)] + 0.4 * rng.normal(size=(3000, 32)))
  targets = _unit(centres[rng.integers(0, 30, 50)] + 0.4 * rng.normal(size=(50, 32)))
  exact_rows, exact_scores = semantic.nearest_by_cosine(targets, sources, 20, "exact")
  np.testing.assert_allclose(exact_scores[:, 0], (targets * sources[exact_rows[:, 0]]).sum(1),
                             rtol=1e-5)
  assert (np.diff(exact_scores, axis=1) <= 1e-6).all()
  found, scores = semantic.nearest_by_cosine(targets, sources, 20, "scann")
  recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(found, exact_rows)])
  assert recall >= 0.9
  # ScaNN trains its k-means tree with threads: the tree varies between builds, and
  # the nearest of 50 targets agreed 0.92-1.0 across suite runs here.
  assert (found[:, 0] == exact_rows[:, 0]).mean() >= 0.9


@pytest.fixture(scope="module")
def first_round(tmp_path_factory):
  return fx.make_problem(str(tmp_path_factory.mktemp("semantic")))


def test_a_deep_selection_keeps_the_base_images_and_pools_the_nearest(first_round):
  base = manifest.load(first_round)
  rng = np.random.default_rng(2)
  target_features = _unit(rng.normal(size=(len(base.target_ids), 8)))
  source_features = _unit(rng.normal(size=(len(base.source_ids), 8)))
  params = manifest.SelectionParams(3, 10, 1)
  deep = semantic.deep_selection(base, target_features, source_features, params, "exact")
  np.testing.assert_array_equal(deep.target_ids, base.target_ids)
  np.testing.assert_array_equal(deep.source_ids, base.source_ids)
  expected = np.argsort(-(target_features @ source_features.T), axis=1, kind="stable")[:, :3]
  for pool, nearest in zip(deep.pools(), expected):
    assert set(pool.tolist()) == set(nearest.tolist())


def test_deep_class_and_fixed_rounds_are_reused_only_for_the_same_inputs(
    first_round, tmp_path, monkeypatch):
  base = manifest.load(first_round)
  rng = np.random.default_rng(3)
  features = (_unit(rng.normal(size=(len(base.target_ids), 8))),
              _unit(rng.normal(size=(len(base.source_ids), 8))))
  calls = []
  monkeypatch.setattr(semantic, "base_features",
                      lambda *args: calls.append(args[1]) or features)
  config, params = semantic.FeatureConfig(weights="w.h5"), manifest.SelectionParams(3, 10, 1)

  def made(folder):
    return os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME))

  deep = semantic.nearest_round(first_round, str(tmp_path / "deep"), config, params,
                                method="exact")
  stamp = made(deep)
  assert semantic.nearest_round(first_round, str(tmp_path / "deep"), config, params,
                                method="exact") == deep and made(deep) == stamp
  assert len(calls) == 1  # reused without computing features
  for other in ({"params": manifest.SelectionParams(4, 10, 1)},
                {"config": semantic.FeatureConfig(weights="other.h5")}):
    arguments = {"config": config, "params": params, **other}
    semantic.nearest_round(first_round, str(tmp_path / "deep"), arguments["config"],
                           arguments["params"], method="exact")
    assert made(deep) > stamp
    stamp = made(deep)
  assert manifest.load(deep).params.k0 == 3 and len(calls) == 3
  # Classes up to a budget: another budget is another round, not the stored one.
  small = semantic.classes_round(first_round, str(tmp_path / "classes"), config, 5)
  count = manifest.load(small).selected.size
  large = semantic.classes_round(first_round, str(tmp_path / "classes"), config, 30)
  assert large == small and manifest.load(large).selected.size > count
  # A fixed subset over the same base round and rows is kept; other rows are not.
  fixed = manifest.uniform_round(first_round, np.arange(4), str(tmp_path / "fixed"), "random")
  stamp = made(fixed)
  manifest.uniform_round(first_round, np.arange(4), str(tmp_path / "fixed"), "random")
  assert made(fixed) == stamp
  manifest.uniform_round(first_round, np.arange(1, 5), str(tmp_path / "fixed"), "random")
  assert made(fixed) > stamp and manifest.load(fixed).neighbours[0].tolist() == [1, 2, 3, 4]


def test_budget_rows_and_equal_target_images(first_round, tmp_path):
  template = train_lib.TrainConfig(output_dir="", target_spec_dir="t", model=fx.TINY_MODEL,
                                   pairs=fx.PAIRS, total_steps=20, steps_per_epoch=10)
  config = ablation.AblationConfig(output_dir=str(tmp_path), learned_descriptors="l",
                                   gabor_descriptors="", train=template, budget_images=7)
  # Equal target images: target-only takes half the joint batch.
  assert ablation.run_configs(config, "target_only", 0, None,
                              "x")[-1].pairs.batch_size == fx.PAIRS.batch_size // 2
  assert ablation.run_configs(config, "joint_random", 0, first_round,
                              "x")[-1].pairs.batch_size == fx.PAIRS.batch_size
  base = manifest.load(first_round)
  random_rows = np.sort(np.random.default_rng(0).choice(len(base.source_ids), 7,
                                                        replace=False))
  folder = manifest.uniform_round(first_round, random_rows, str(tmp_path / "r"), "random")
  assert set(manifest.load(folder).neighbours[0].tolist()) == set(random_rows.tolist())


def test_class_report_counts_each_target_class_pools_and_lifts(first_round, tmp_path):
  from sjft_tf.selection import report
  selection = manifest.load(first_round)
  names = spec_lib.load_spec(selection.provenance.target.spec_dir).readable_names()
  written = report.write(selection, str(tmp_path))
  assert (tmp_path / report.JSON_FILENAME).exists() and (tmp_path / report.FIGURE_FILENAME).exists()
  pools = selection.pools()
  for label, name in enumerate(names):
    members = np.nonzero(selection.target_labels == label)[0]
    rows = np.unique(np.concatenate([pools[i] for i in members]))
    counts = np.bincount(selection.source_labels[rows], minlength=len(selection.source_class_names))
    top = written["target_classes"][name]["top"][0]
    assert top["images"] == counts.max() and written["target_classes"][name][
        "selected_images"] == len(rows)
    c = selection.source_class_names.index(top["source_class"])
    source_share = (selection.source_labels == c).mean()
    assert top["lift"] == pytest.approx(counts[c] / len(rows) / source_share, abs=0.01)
  assert written["overall"]["selected_images"] == len(selection.selected)
  # Without display names in the source spec an entry's name is its class name; given
  # readable names, entries carry them beside the class.
  assert all(t["name"] == t["source_class"] for t in written["overall"]["top"])
  readable = [f"readable {n}" for n in selection.source_class_names]
  top = report.class_report(selection, names, readable)["overall"]["top"][0]
  assert top["name"] == f"readable {top['source_class']}"


def test_pooled_features_are_cached_reused_and_a_damaged_cache_computed_again(
    first_round, tmp_path, monkeypatch, caplog, shared_data_dir):
  """The cache is keyed by the images and the network; a truncated cache file is named
  in a warning and replaced by the same features, never read as if whole (MobileNet
  0.25 with the real ImageNet weights of ../shared)."""
  from sjft_tf import files  # pylint: disable=g-import-not-at-top
  from sjft_tf.training import model as model_lib  # pylint: disable=g-import-not-at-top
  target = manifest.load(first_round).provenance.target.spec_dir
  weights = os.path.join(os.path.dirname(shared_data_dir), "weights",
                         "mobilenet_v1_0.25_imagenet", "mobilenet_2_5_224_tf_no_top.h5")
  config = semantic.FeatureConfig(base="MobileNet", weights=weights, alpha=0.25,
                                  input_size=fx.IMAGE_SIZE, batch_size=4)
  ids, labels, features = semantic.pooled_features(target, "train", config, str(tmp_path))
  assert len(ids) == len(labels) == spec_lib.load_spec(target).split("train").num_examples
  np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
  (cache,) = [tmp_path / name for name in os.listdir(tmp_path)]
  build = model_lib.build_base
  monkeypatch.setattr(model_lib, "build_base", lambda *a: pytest.fail("not reused"))
  reused = semantic.pooled_features(target, "train", config, str(tmp_path))
  np.testing.assert_array_equal(reused[2], features)
  with open(cache, "r+b") as f:
    f.truncate(os.path.getsize(cache) // 2)
  monkeypatch.setattr(model_lib, "build_base", build)
  again = semantic.pooled_features(target, "train", config, str(tmp_path))
  assert caplog.text.count(str(cache)) == 1 and "computed again" in caplog.text
  np.testing.assert_array_equal(again[0], ids)
  np.testing.assert_allclose(again[2], features, atol=1e-6)
  assert files.npz_is_whole(str(cache))
  caplog.clear()  # a whole cache of another format version is computed again too
  files.save_npz_atomic(str(cache), version=semantic.FEATURES_VERSION - 1, ids=ids,
                        labels=labels, features=np.zeros_like(features))
  np.testing.assert_allclose(semantic.pooled_features(target, "train", config,
                                                      str(tmp_path))[2], features, atol=1e-6)
  assert "another version" in caplog.text and str(cache) in caplog.text
