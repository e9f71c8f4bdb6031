"""The benchmarks' flags come from config dataclasses: bounds refused alike from Python and
the command line, every field a flag, and the tools' flags kept apart (one process can
import them all)."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from sjft_tf.benchmarks import beam as benchmark_beam
from sjft_tf.benchmarks import descriptors as benchmark_descriptors
from sjft_tf.benchmarks import reader as benchmark_reader
from sjft_tf.benchmarks import selection as benchmark_selection
from sjft_tf.benchmarks import training as benchmark_training

BIN = os.path.dirname(sys.executable)
TOOLS = {"sjft-benchmark-beam": benchmark_beam.BeamBenchmarkConfig,
         "sjft-benchmark-descriptors": benchmark_descriptors.DescriptorBenchmarkConfig,
         "sjft-benchmark-reader": benchmark_reader.ReaderBenchmarkConfig,
         "sjft-benchmark-selection": benchmark_selection.SelectionBenchmarkConfig,
         "sjft-benchmark-training": benchmark_training.TrainingBenchmarkConfig}


def _run(*args):
  return subprocess.run([os.path.join(BIN, args[0]), *args[1:]], capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_help_lists_every_field_of_the_config(tool):
  done = _run(tool, "--help")
  assert done.returncode == 0, done.stderr
  listed = set(re.findall(r"^  --(\w+):", done.stdout, re.MULTILINE))
  assert {f.name for f in dataclasses.fields(TOOLS[tool])} <= listed


def test_out_of_bounds_values_are_refused_from_python_and_the_command_line(tmp_path):
  with pytest.raises(ValueError, match="repeats"):
    benchmark_reader.ReaderBenchmarkConfig(repeats=0)
  with pytest.raises(ValueError, match="dask:0"):
    benchmark_beam.BeamBenchmarkConfig("t", "s", "o", modes=("local", "dask:0"))
  done = _run("sjft-benchmark-reader", "--repeats=0", f"--work_dir={tmp_path}")
  assert done.returncode != 0 and "--repeats=0" in done.stderr
  done = _run("sjft-benchmark-selection")
  assert done.returncode != 0 and "--descriptors_dir" in done.stderr


def test_reader_benchmark_reads_the_same_images_both_ways(tmp_path):
  done = _run("sjft-benchmark-reader", "--num_images=24", "--image_height=60",
              "--image_width=80", "--repeats=1", "--resize_size=40", "--crop_size=32",
              "--batch_size=8", f"--work_dir={tmp_path}")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "24 read by ours (ingested with max_side=original), 24 by Keras" in done.stdout
  assert "output 32x32; 1 paired epochs" in done.stdout
  ratio = re.search(r"ratio ours/keras\s+([\d.]+)x", done.stdout)
  assert ratio and float(ratio.group(1)) > 0
