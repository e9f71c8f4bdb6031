"""Install sjft_tf and its command-line tools (`sjft-*` console scripts)."""

import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _requirements(name: str) -> list[str]:
  lines = (HERE / name).read_text().splitlines()
  return [line.split("#")[0].strip() for line in lines
          if line.split("#")[0].strip() and not line.startswith("-")]


TOOLS = {
    "sjft-ingest": "tools.ingest",
    "sjft-make-demo-data": "tools.make_demo_data",
    "sjft-benchmark-reader": "tools.benchmark_reader",
    "sjft-descriptors": "tools.descriptors",
    "sjft-benchmark-descriptors": "tools.benchmark_descriptors",
    "sjft-select": "tools.select",
    "sjft-benchmark-selection": "tools.benchmark_selection",
    "sjft-train": "tools.train",
    "sjft-benchmark-training": "tools.benchmark_training",
    "sjft-eval": "tools.evaluate",
    "sjft-export": "tools.export",
    "sjft-reproduce": "tools.reproduce",
    "sjft-run": "tools.run",
}

setuptools.setup(
    name="sjft_tf",
    version="0.1.0",
    description="Selective joint fine-tuning (Ge & Yu, CVPR 2017) for Keras and TensorFlow",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["sjft_tf", "sjft_tf.*", "tools"]),
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
    entry_points={"console_scripts": [f"{name}={module}:run"
                                      for name, module in TOOLS.items()]},
)
