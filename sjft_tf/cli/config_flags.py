"""Command-line flags made from the library's configuration dataclasses.

One flag per leaf field of a (nested) dataclass: named after the field (with a prefix
per nested section where names would clash), typed by its annotation (a dict is a JSON
string, a dict[str, int] "name=count,..."), defaulting to the dataclass default and
documented by the field's line in the class docstring's `Attributes:` section. A
field's `metadata["flag"]` holds what the flag checks: `lower_bound` / `upper_bound`,
or `enum_values` (a list field is then a repeated flag, e.g. --views=centre
--views=ten_crops). The configuration keeps one definition (the dataclass); a command
line maps no field by hand.

  build = config_flags.define(FLAG_VALUES, train.TrainConfig, prefixes={"l2sp": "l2sp_"})
  ...
  config = build()          # after absl parsed the flags
"""

import dataclasses
import json
import re
import types
import typing

from absl import flags

from sjft_tf import errors

_DEFINERS = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
             float: flags.DEFINE_float, str: flags.DEFINE_string}


def field_help(cls) -> dict[str, str]:
  """{field name: its text} from the `Attributes:` section of cls's docstring; a line
  `a, b: text` documents both fields. Entries start at the section's indentation;
  deeper lines continue them."""
  helps, names = {}, []
  lines = [l for l in (cls.__doc__ or "").partition("Attributes:")[2].splitlines()]
  indent = next((len(l) - len(l.lstrip()) for l in lines if l.strip()), 0)
  for line in lines:
    match = re.match(r"^ {%d}(\w[\w, ]*):\s*(.*)$" % indent, line)
    if match and all(n.strip().isidentifier() for n in match.group(1).split(",")):
      names = [n.strip() for n in match.group(1).split(",")]
      helps.update({name: match.group(2) for name in names})
    elif line.strip() and len(line) - len(line.lstrip()) > indent:
      helps.update({name: helps[name] + " " + line.strip() for name in names})
    else:
      names = []
  return helps


def _scalar_type(annotation):
  """(flag type, element type) of a field annotation: `int | None` -> (int, None),
  `tuple[int, ...]` -> (tuple, int), `list` -> (list, str)."""
  if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
    annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
  scalar = typing.get_origin(annotation) or annotation
  return scalar, (typing.get_args(annotation) or (str,))[0] if scalar in (list, tuple) else None


def _counts(name: str, text: str) -> dict[str, int]:
  """A dict[str, int] flag's "train=10,val=10" as {"train": 10, "val": 10}."""
  counts = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, _, value = item.partition("=")
    if not value.strip().isdigit():
      raise errors.InputError(f"--{name}: {item!r} is not name=count")
    counts[key.strip()] = int(value)
  return counts


def _default(field: dataclasses.Field):
  if field.default is not dataclasses.MISSING:
    return field.default
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return None


def define(flag_values: flags.FlagValues, cls, prefixes: dict | None = None, skip=(),
           defaults: dict | None = None, required=(), names: dict | None = None):
  """Defines the flags of dataclass `cls` on `flag_values` (a tool's FLAG_VALUES);
  returns build() -> cls from their values.

  Args:
    prefixes: {dotted name of a nested dataclass field, or "" for the top level:
      prefix of its flags' names}; e.g. {"l2sp": "l2sp_"} gives --l2sp_alpha.
    skip: dotted field names given no flag (they keep their dataclass default, or the
      value `defaults` gives them).
    defaults: {dotted field name: default} replacing the dataclass defaults.
    required: dotted field names whose flag must be given.
    names: {dotted field name: flag name} where the flag is not named after the field.
  """
  # Over 60 lines: one flag kind per field type (scalars, enums, lists, tuples, dicts,
  # nested configs), each a few lines; apart they would share the prefix bookkeeping.
  prefixes, defaults, names = prefixes or {}, defaults or {}, names or {}

  def walk(section, path: str, prefix: str):
    helps, hints, parts = field_help(section), typing.get_type_hints(section), {}
    for field in dataclasses.fields(section):
      key = f"{path}{field.name}"
      if key in skip:
        if key in defaults:
          parts[field.name] = (lambda v: lambda: v)(defaults[key])
        continue
      kind = hints[field.name]
      if dataclasses.is_dataclass(kind):
        parts[field.name] = walk(kind, key + ".", prefixes.get(key, prefix))
        continue
      default = defaults.get(key, _default(field))
      name, text = names.get(key, prefix + field.name), helps.get(field.name, field.name)
      (scalar, element), options = _scalar_type(kind), dict(field.metadata.get("flag", {}))
      if "enum_values" in options:  # a str is one of them; a list/tuple, repeated flags
        multi = scalar in (list, tuple)
        define_enum = flags.DEFINE_multi_enum if multi else flags.DEFINE_enum
        holder = define_enum(name, list(default) if multi else default,
                             options["enum_values"], text, flag_values=flag_values,
                             required=key in required)
        parts[field.name] = (lambda h, t: lambda: t(h.value) if t else h.value)(
            holder, scalar if multi else None)
      elif scalar is dict and typing.get_args(kind) == (str, int):  # name=count,...
        holder = flags.DEFINE_string(
            name, ",".join(f"{k}={v}" for k, v in default.items()), text,
            flag_values=flag_values, required=key in required)
        parts[field.name] = (lambda h: lambda: _counts(h.name, h.value))(holder)
      elif scalar is dict:
        holder = flags.DEFINE_string(name, json.dumps(default), text + " (JSON)",
                                     flag_values=flag_values, required=key in required)
        parts[field.name] = (lambda h: lambda: json.loads(h.value))(holder)
      elif scalar in (list, tuple):
        holder = flags.DEFINE_list(name, None if default is None else list(default), text,
                                   flag_values=flag_values, required=key in required)
        parts[field.name] = (lambda h, t, e: lambda: None if h.value is None else t(
            map(e, h.value)))(holder, scalar, element)
      else:
        holder = _DEFINERS[scalar](name, default, text, flag_values=flag_values,
                                   required=key in required, **options)
        parts[field.name] = (lambda h: lambda: h.value)(holder)

    def build(**values):
      """The config from the flags; `values` set top-level fields directly."""
      return section(**{**{name: part() for name, part in parts.items()}, **values})
    return build

  return walk(cls, "", prefixes.get("", ""))
