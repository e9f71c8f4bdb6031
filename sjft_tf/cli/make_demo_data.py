"""sjft-make-demo-data: writes the embedded synthetic source/target problem as images.

  sjft-make-demo-data --output_dir=runs/demo/images
then ingest OUT/source and OUT/target with sjft-ingest (see flags/ingest/demo_*.flags).
"""

from absl import flags

from sjft_tf.data import synthetic
from sjft_tf.cli import runner

FLAG_VALUES = flags.FlagValues()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the image trees and generator.json.", required=True, flag_values=FLAG_VALUES)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of everything generated.", flag_values=FLAG_VALUES)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Side of the square images, pixels.", lower_bound=16, flag_values=FLAG_VALUES)
_SOURCE_PER_CLASS = flags.DEFINE_integer("source_images_per_class", 80, "Images per source class.", lower_bound=1, flag_values=FLAG_VALUES)
_NUM_TARGET_CLASSES = flags.DEFINE_integer("num_target_classes", 6, "Target classes, each related to one source class.", lower_bound=1, flag_values=FLAG_VALUES)
_TARGET_SPLITS = flags.DEFINE_string("target_split_sizes", "train=10,val=10,test=30", "Target images per class in each split.", flag_values=FLAG_VALUES)


def main(argv):
  del argv
  sizes = {}
  for item in _TARGET_SPLITS.value.split(","):
    name, _, count = item.partition("=")
    sizes[name.strip()] = int(count)
  config = synthetic.SyntheticConfig(
      seed=_SEED.value, image_size=_IMAGE_SIZE.value,
      source_images_per_class=_SOURCE_PER_CLASS.value,
      num_target_classes=_NUM_TARGET_CLASSES.value, target_split_sizes=sizes)
  record = synthetic.generate(_OUTPUT_DIR.value, config)
  print(f"demo images in {_OUTPUT_DIR.value}: {len(record['source_classes'])} source classes, "
        f"{len(record['related_source_classes'])} target classes")
  for target, related in record["related_source_classes"].items():
    print(f"  {target} <- {', '.join(related)}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
