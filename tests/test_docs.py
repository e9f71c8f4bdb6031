"""README.md and docs/: every relative link resolves (files and heading anchors), every
command line shown names a real console script or module whose --help runs, and every
flag it shows is one that tool defines."""

import concurrent.futures
import glob
import os
import re
import subprocess
import sys


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
# absl's own flags, which every tool accepts besides its own.
ABSL_FLAGS = {"flagfile", "verbosity", "v", "undefok", "logtostderr", "alsologtostderr",
              "helpfull", "help", "only_check_args"}
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
  with open(path) as f:
    return {_slug(line.lstrip("#")) for line in f if line.startswith("#")}


def test_readme_is_short_and_every_relative_link_resolves():
  with open(PAGES[0]) as f:
    assert len(f.read().splitlines()) <= 260
  broken = []
  for page in PAGES:
    with open(page) as f:
      text = f.read()
    assert not re.search(r"\(issue \d+\)|[Ii]ssue \d+'s", text), page
    for target in _LINK.findall(text):
      if re.match(r"[a-z]+:", target):
        continue  # http(s), mailto
      path, _, anchor = target.partition("#")
      resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
      if not os.path.exists(resolved):
        broken.append(f"{page}: {target} (no file)")
      elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
        broken.append(f"{page}: {target} (no heading)")
  assert not broken, broken


def _code_lines(text: str) -> list[str]:
  """Lines of indented and fenced code blocks, continuations joined."""
  lines, fenced = [], False
  for line in text.splitlines():
    if line.strip().startswith("```"):
      fenced = not fenced
      continue
    if fenced or line.startswith("    "):
      lines.append(line.strip())
  return re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()


def _commands() -> dict[str, set[str]]:
  """{tool (console script or python -m module): flags shown} over every page."""
  commands: dict[str, set[str]] = {}
  for page in PAGES:
    with open(page) as f:
      for line in _code_lines(f.read()):
        words = line.split("#")[0].split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
          words = words[1:]  # KEY=value before the command
        if not words:
          continue
        if words[0].startswith("sjft-") and not words[0].endswith(":"):
          tool, rest = words[0], words[1:]
        elif (re.fullmatch(r"(\S*/)?python3?", words[0]) and len(words) > 2
              and words[1] == "-m" and words[2].split(".")[0] in ("tools", "sjft_tf")):
          tool, rest = words[2], words[3:]
        else:
          continue
        shown = {w.strip("[]")[2:].split("=")[0] for w in rest
                 if w.strip("[]").startswith("--")}
        commands.setdefault(tool, set()).update(shown)
  return commands


def _help(tool: str) -> tuple[str, str]:
  if tool.startswith("sjft-"):
    command = [os.path.join(BIN, tool), "--help"]
  else:
    command = [sys.executable, "-m", tool, "--helpfull"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  # absl's app.run exits 1 after printing --helpfull; our tools exit 0 after --help.
  assert done.returncode == (0 if tool.startswith("sjft-") else 1) and "--" in done.stdout, (
      f"{tool} --help: {done.stderr[-2000:]}")
  return tool, done.stdout


def test_every_command_shown_runs_its_help_and_knows_its_flags():
  commands = _commands()
  assert {"sjft-ingest", "sjft-reproduce", "sjft-export", "tools.gpu_check"} <= set(commands)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    helps = dict(pool.map(_help, sorted(commands)))
  unknown = []
  for tool, shown in sorted(commands.items()):
    known = set(re.findall(r"--(?:\[no\])?(\w+)", helps[tool])) | ABSL_FLAGS
    for name in sorted(shown - {""}):
      if name not in known and not (name.startswith("no") and name[2:] in known):
        unknown.append(f"{tool} --{name}")
  assert not unknown, unknown


def test_readme_numbers_about_our_studies_are_generated_from_results():
  """README's answer table and its "When it pays" bullets are what tools/answer_table.py
  makes from the committed results/*/results.json: no number of a study is typed by hand."""
  sys.path.insert(0, REPO)
  from tools import answer_table  # pylint: disable=g-import-not-at-top
  table, bullets, _ = answer_table.readme_blocks(REPO)
  with open(PAGES[0]) as f:
    readme = f.read()
  assert f"{answer_table.BEGIN}\n\n{table}\n\n{answer_table.END}" in readme
  assert f"{answer_table.CLAIMS_BEGIN}\n\n{bullets}\n\n{answer_table.CLAIMS_END}" in readme
  # The bullets hold the studies' numbers: e.g. LP-FT's test mean on Flowers, Lite0.
  lite0 = answer_table.study_results(answer_table.STUDIES[3], REPO)
  assert f"{lite0['rows']['lp_ft']['test/centre/top1']['mean'] * 100:.1f}" in bullets
