"""The rows of the comparison table, each one entry: its title, how its first selection
round is made, and how its training runs chain. The lists the rest of the package uses
(the paper's rows, the rows without a source, the rows a budget sizes) derive from it,
so a new row is one entry here (and its chain in ablation.run_configs if it is new).

  rows.REGISTRY["selective_classes"].title        # "selective, deep class means"
  rows.names(lambda r: r.budget_sized)
"""

import dataclasses

from sjft_tf import errors

# How a row's first round is made (ablation.row_rounds), from the learned bank's ranking
# unless said: None, no source; "all", the whole source; "random", a random subset of the
# budget's size; "learned" / "gabor", each target's nearest by the bank's statistics;
# "deep", each target's nearest by pretrained pooled features; "classes", whole classes
# whose mean feature is nearest a target class mean.
SELECTIONS = (None, "all", "random", "learned", "gabor", "deep", "classes")
# How its runs chain (ablation.run_configs): "joint", one joint run; "iterative", one run
# of rounds; "target", fine-tuning on the target alone; "l2sp", the same with L2-SP;
# "linear_probe", the target head on the frozen base; "lp_ft", that probe then
# everything; "pretrain", the source alone for a share of the batches, then the target
# alone with a fresh head.
CHAINS = ("joint", "iterative", "target", "l2sp", "linear_probe", "lp_ft", "pretrain")


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of the table.

  Attributes:
    name: its name on the command line (--rows) and in results.json.
    title: its name in tables and figures.
    selection: how its first round is made (SELECTIONS).
    chain: how its runs chain (CHAINS).
    in_paper: one of the paper's table's rows (the default --rows).
  """
  name: str
  title: str
  selection: str | None
  chain: str
  in_paper: bool = False

  def __post_init__(self):
    if self.selection not in SELECTIONS or self.chain not in CHAINS:
      raise errors.InputError(f"row {self.name}: selection {self.selection!r} / chain "
                              f"{self.chain!r}; known: {SELECTIONS} / {CHAINS}")

  @property
  def uses_source(self) -> bool:
    return self.selection is not None

  @property
  def budget_sized(self) -> bool:
    """Whether the budget (source images) sizes its selection."""
    return self.selection not in (None, "all")

  @property
  def from_learned_ranking(self) -> bool:
    """Whether its first round is made over the learned bank's ranked round."""
    return self.selection not in (None, "gabor")


REGISTRY = {row.name: row for row in (
    Row("target_only", "fine-tune, no source", None, "target", in_paper=True),
    Row("joint_all", "joint, all source", "all", "joint", in_paper=True),
    Row("joint_random", "joint, random source", "random", "joint", in_paper=True),
    Row("selective_learned", "selective, no iteration", "learned", "joint", in_paper=True),
    Row("selective_gabor", "selective, Gabor", "gabor", "joint", in_paper=True),
    Row("selective_learned_iterative", "selective (iterative)", "learned", "iterative",
        in_paper=True),
    Row("selective_deep", "selective, deep features", "deep", "joint", in_paper=True),
    Row("selective_classes", "selective, deep class means", "classes", "joint",
        in_paper=True),
    Row("l2sp", "fine-tune with L2-SP, no source", None, "l2sp"),
    Row("linear_probe", "linear probe, no source", None, "linear_probe"),
    Row("lp_ft", "linear probe then fine-tune, no source", None, "lp_ft"),
    Row("pretrain_classes", "pre-train on the class means' classes, then fine-tune",
        "classes", "pretrain"),
    Row("pretrain_all", "pre-train on all source, then fine-tune", "all", "pretrain"),
)}


def names(keep=lambda row: True) -> tuple[str, ...]:
  """The names of the registered rows that `keep` accepts, in registry order."""
  return tuple(name for name, row in REGISTRY.items() if keep(row))
