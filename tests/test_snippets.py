"""Every Python snippet of README.md and docs/ runs as written, each in a namespace of
its own (so a snippet that uses a name it does not import fails), in one working folder
where the earlier snippets made what the later ones read: photos/ and a source ingested
(the ingest page), their descriptors, a selection, a trained run, a comparison.

Where a snippet names an output of the demo (runs/demo/...), the folder holds that kind
of output made by the snippets before it, under that name. `weights="imagenet"` reads the
real MobileNet weights of ../shared through Keras's cache (KERAS_HOME), as a connected
user's download would.
"""

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
# The pages with snippets, in the order their outputs feed each other; a link made
# before a page: (name a snippet reads, what an earlier snippet wrote).
ORDER = (("docs/ingest.md", ()), ("docs/descriptors.md", ()), ("docs/selection.md", ()),
         ("README.md", (("runs/demo/selection", "runs/my/selection"),
                        ("runs/demo/data/target", "data/my_target"))),
         ("docs/training.md", ()),
         ("docs/evaluation_export.md", (("runs/demo/train", "runs/mine"),)),
         ("docs/reproduce.md", ()))
_SNIPPET = re.compile(r"```python\n(.*?)```", re.S)

DRIVER = """
import json, os, sys, traceback
steps = json.load(open(sys.argv[1]))
for page, links, code in steps:
  for name, target in links:
    os.makedirs(os.path.dirname(name), exist_ok=True)
    if not os.path.exists(name):
      os.symlink(os.path.abspath(target), name)
  try:
    exec(compile(code, page, "exec"), {"__name__": "__snippet__"})
  except Exception:
    traceback.print_exc()
    print(f"SNIPPET FAILED: {page}", flush=True)
    sys.exit(1)
  print(f"SNIPPET RAN: {page}", flush=True)
"""


def snippets() -> dict[str, list[str]]:
  """{page: its ```python blocks} of README.md and docs/*.md that have any."""
  found = {}
  for page in ["README.md"] + sorted(f"docs/{n}" for n in os.listdir(os.path.join(REPO, "docs"))
                                     if n.endswith(".md")):
    with open(os.path.join(REPO, page)) as f:
      blocks = _SNIPPET.findall(f.read())
    if blocks:
      found[page] = blocks
  return found


def _run(command, cwd, env):
  done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900,
                        env=env)
  assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
  return done.stdout


def test_every_python_snippet_runs(tmp_path, shared_data_dir):
  found = snippets()
  assert sorted(found) == sorted(page for page, _ in ORDER), "a page's snippets are not run"
  weights = os.path.join(os.path.dirname(shared_data_dir), "weights",
                         "mobilenet_v1_0.25_imagenet", "mobilenet_2_5_224_tf_no_top.h5")
  (tmp_path / "keras" / "models").mkdir(parents=True)
  os.symlink(weights, tmp_path / "keras" / "models" / os.path.basename(weights))
  env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
             TF_CPP_MIN_LOG_LEVEL="2", KERAS_HOME=str(tmp_path / "keras"))
  work = tmp_path / "work"
  work.mkdir()
  _run([os.path.join(BIN, "sjft-make-demo-data"), f"--output_dir={tmp_path / 'images'}",
        "--image_size=64", "--source_images_per_class=8", "--num_target_classes=3",
        "--target_split_sizes=all=10"], tmp_path, env)
  os.rename(tmp_path / "images" / "target" / "all", work / "photos")
  _run([os.path.join(BIN, "sjft-ingest"), f"--input_root={tmp_path / 'images' / 'source'}",
        "--output_dir=data/my_source"], work, env)
  steps = [(page, links, block) for page, links in ORDER for block in found[page]]
  (tmp_path / "steps.json").write_text(json.dumps(steps))
  (tmp_path / "driver.py").write_text(DRIVER)
  out = _run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "steps.json")],
             work, env)
  assert out.count("SNIPPET RAN:") == len(steps), out
  # What they made: the comparison's table and the trained runs' evaluations.
  results = json.loads((work / "runs" / "my_first_look" / "results.json").read_text())
  assert set(results["rows"]) == {"target_only", "joint_random", "selective_learned"}
  assert (work / "runs" / "mine" / "evaluation_test.json").exists()
