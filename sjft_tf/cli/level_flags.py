"""The hard-sample level rule's flags, shared by sjft-select and sjft-train."""

from absl import flags

from sjft_tf.selection import levels

_MISCLASSIFIED_STEP = flags.DEFINE_integer("misclassified_step", levels.LevelRule.misclassified_step, "Level added to a misclassified target image.")
_UNCERTAIN_STEP = flags.DEFINE_integer("uncertain_step", levels.LevelRule.uncertain_step, "Level added to a correct but uncertain one.")
_ENTROPY_THRESHOLD = flags.DEFINE_float("entropy_threshold", levels.LevelRule.entropy_threshold, "Uncertain: entropy / log(classes) above this.")
_MAX_LEVEL = flags.DEFINE_integer("max_level", levels.LevelRule.max_level, "Levels are capped here.", lower_bound=1)


def level_rule() -> levels.LevelRule:
  """The LevelRule the flags describe."""
  return levels.LevelRule(_MISCLASSIFIED_STEP.value, _UNCERTAIN_STEP.value,
                          _ENTROPY_THRESHOLD.value, _MAX_LEVEL.value)
