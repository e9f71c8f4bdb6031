"""Install sjft_tf and its command-line tools (`sjft-*` console scripts)."""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _requirements(name: str) -> list[str]:
  lines = (HERE / name).read_text().splitlines()
  return [line.split("#")[0].strip() for line in lines
          if line.split("#")[0].strip() and not line.startswith("-")]


TOOLS = {
    "sjft-ingest": "sjft_tf.cli.ingest",
    "sjft-make-demo-data": "sjft_tf.cli.make_demo_data",
    "sjft-benchmark-reader": "sjft_tf.benchmarks.reader",
    "sjft-descriptors": "sjft_tf.cli.descriptors",
    "sjft-benchmark-descriptors": "sjft_tf.benchmarks.descriptors",
    "sjft-select": "sjft_tf.cli.select",
    "sjft-benchmark-selection": "sjft_tf.benchmarks.selection",
    "sjft-benchmark-beam": "sjft_tf.benchmarks.beam",
    "sjft-train": "sjft_tf.cli.train",
    "sjft-benchmark-training": "sjft_tf.benchmarks.training",
    "sjft-eval": "sjft_tf.cli.evaluate",
    "sjft-export": "sjft_tf.cli.export",
    "sjft-reproduce": "sjft_tf.cli.reproduce",
    "sjft-run": "sjft_tf.cli.run",
}

setuptools.setup(
    name="sjft_tf",
    version="0.1.0",
    description="Selective joint fine-tuning (Ge & Yu, CVPR 2017) for Keras and TensorFlow",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["sjft_tf", "sjft_tf.*"]),
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
    entry_points={"console_scripts": [f"{name}={module}:run"
                                      for name, module in TOOLS.items()]},
)
