"""A stage that finds its own output damaged makes it again and says so in one line,
where its advice used to loop ("run sjft-ingest again", which failed the same way) or
a damaged file was reused silently: the dataset spec (sjft-ingest), the descriptor
metadata (sjft-descriptors), the selection's subset shards and spec (sjft-select)."""

import json
import os
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _run(tool, *args, cwd):
  done = subprocess.run([os.path.join(BIN, tool), *args], cwd=cwd, capture_output=True,
                        text=True, timeout=600, env=ENV)
  assert done.returncode == 0, f"{tool} {args}\n{done.stderr[-3000:]}"
  return done.stdout + done.stderr


def _damage(path, how="json"):
  if how == "json":
    with open(path, "w") as f:
      f.write('{"x')
  else:  # the second half of the file overwritten, the size kept
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2] + b"x" * (len(data) - len(data) // 2))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  root = tmp_path_factory.mktemp("remakes")
  _run("sjft-make-demo-data", "--output_dir=img", "--image_size=64",
       "--source_images_per_class=4", "--num_target_classes=2",
       "--target_split_sizes=train=4,test=2", cwd=root)
  _run("sjft-ingest", "--input_root=img/target", "--output_dir=data/t", cwd=root)
  _run("sjft-ingest", "--input_root=img/source", "--output_dir=data/s", cwd=root)
  return root


DESCRIBE = ("--target_dir=data/t", "--source_dir=data/s", "--output_dir=d", "--bank=gabor",
            "--resize_size=64", "--crop_size=64", "--noprogress")
SELECT = ("--descriptors_dir=d", "--output_dir=sel", "--k0=3", "--max_neighbours=10",
          "--min_images_per_class=2", "--search=exact")


def test_a_damaged_dataset_spec_is_made_again_by_ingest(work):
  spec = work / "data" / "t" / "dataset_spec.json"
  before = json.loads(spec.read_text())
  _damage(spec)
  out = _run("sjft-ingest", "--input_root=img/target", "--output_dir=data/t", cwd=work)
  assert f"data/t/dataset_spec.json is damaged: made again" in out
  assert json.loads(spec.read_text()) == before


def test_damaged_descriptor_metadata_and_subset_are_made_again(work):
  _run("sjft-descriptors", *DESCRIBE, cwd=work)
  metadata = work / "d" / "descriptor_metadata.json"
  before = json.loads(metadata.read_text())
  _damage(metadata)
  out = _run("sjft-descriptors", *DESCRIBE, cwd=work)
  assert "d/descriptor_metadata.json is damaged: the descriptors it recorded are made again" in out
  assert json.loads(metadata.read_text()) == before
  _run("sjft-select", *SELECT, cwd=work)
  subset = work / "sel" / "round_000" / "subset"
  shard = next(subset.glob("*.tfrecord"))
  record = json.loads((subset / f"{shard.name}.json").read_text())
  assert record["bytes"] == shard.stat().st_size and len(record["sha1"]) == 40
  whole = shard.read_bytes()
  _damage(shard, "bytes")  # same size: only the SHA-1 tells
  out = _run("sjft-select", *SELECT, cwd=work)
  assert f"sel/round_000/subset: written again (damaged: {shard})" in out
  assert shard.read_bytes() == whole
  _damage(subset / "dataset_spec.json")
  out = _run("sjft-select", *SELECT, cwd=work)
  assert "sel/round_000/subset: written again (sel/round_000/subset/dataset_spec.json is damaged" in out
  assert "sjft-ingest" not in out and shard.read_bytes() == whole
  assert "written again" not in _run("sjft-select", *SELECT, cwd=work)  # whole: reused
