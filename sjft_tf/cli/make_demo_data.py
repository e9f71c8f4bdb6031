"""sjft-make-demo-data: writes the embedded synthetic source/target problem as images.

  sjft-make-demo-data --output_dir=runs/demo/images
then ingest OUT/source and OUT/target with sjft-ingest (see flags/ingest/demo_*.flags).
"""

from absl import flags

from sjft_tf.data import synthetic
from sjft_tf.cli import config_flags, runner

FLAG_VALUES = flags.FlagValues()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the image trees and generator.json.", required=True, flag_values=FLAG_VALUES)
# Every field of SyntheticConfig is a flag of its name (--seed, --image_size,
# --source_images_per_class, --num_target_classes, --target_split_sizes=train=10,...).
_CONFIG = config_flags.define(FLAG_VALUES, synthetic.SyntheticConfig)


def main(argv):
  del argv
  config = _CONFIG()
  record = synthetic.generate(_OUTPUT_DIR.value, config)
  print(f"demo images in {_OUTPUT_DIR.value}: {len(record['source_classes'])} source classes, "
        f"{len(record['related_source_classes'])} target classes")
  for target, related in record["related_source_classes"].items():
    print(f"  {target} <- {', '.join(related)}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
