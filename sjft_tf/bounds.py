"""The allowed values of configuration fields, kept with each field, checked alike by
the command line (config_flags makes them flag validators) and by Python (each config
dataclass checks itself when built).

  batch_size: int = bounds.field(32, lower=1)
  dropout: float = bounds.field(0.0, lower=0.0, upper=0.99)
  schedule: str = bounds.field("cosine", choices=("cosine", "step"))

A field's `metadata["flag"]` holds `lower_bound`, `upper_bound` (inclusive) or
`enum_values`; None values (an optional field left unset) are not checked.
"""

import dataclasses

from sjft_tf import errors


def field(default=dataclasses.MISSING, *, lower=None, upper=None, choices=None,
          default_factory=dataclasses.MISSING):
  """A dataclass field whose value must lie in [lower, upper] or among `choices`."""
  flag = {}
  if lower is not None:
    flag["lower_bound"] = lower
  if upper is not None:
    flag["upper_bound"] = upper
  if choices is not None:
    flag["enum_values"] = list(choices)
  return dataclasses.field(default=default, default_factory=default_factory,
                           metadata={"flag": flag})


def check(config) -> None:
  """Raises ValueError naming `Class.field` for the first value out of its bounds or
  choices (every element of a list or tuple field is checked)."""
  for item in dataclasses.fields(config):
    rule = item.metadata.get("flag", {})
    value = getattr(config, item.name)
    values = value if isinstance(value, (list, tuple)) else [value]
    for one in values:
      if one is None or isinstance(one, bool):
        continue
      where = f"{type(config).__name__}.{item.name} = {one!r}"
      if "enum_values" in rule and one not in rule["enum_values"]:
        raise errors.InputError(f"{where}: must be one of {rule['enum_values']}")
      if "lower_bound" in rule and one < rule["lower_bound"]:
        raise errors.InputError(f"{where}: must be at least {rule['lower_bound']}")
      if "upper_bound" in rule and one > rule["upper_bound"]:
        raise errors.InputError(f"{where}: must be at most {rule['upper_bound']}")
