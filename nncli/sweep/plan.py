"""A parsed sweep file: its axes (what varies), their targets (where each value is written) and
the run settings. Pure Python; :func:`nncli.sweep.parse.load_sweep` makes one.
"""

from __future__ import annotations

import copy
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.spec.overrides import replace_layers, set_path
from nncli.spec.source import Where, format_path, parse_yaml, read_text

SWEEP_KEYS = (
    "name",
    "description",
    "base",
    "spec",
    "specs",
    "grid",
    "random",
    "seeds",
    "trials",
    "search_seed",
    "metric",
    "goal",
    "set",
    "search",
)
# Random-search distributions: {choice: [..]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]},
# {int: [lo, hi]} (both ends included). A bare list in `random:` is a choice.
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")


@dataclass(frozen=True)
class Target:
    """One place an axis writes to: a spec path, or every layer of a type (``replace``)."""

    path: tuple = ()  # ("layers", 2, "Repeat", "times"); empty for a replace target
    replace: str | None = None  # layer type name whose layers are swapped for the axis value
    spec_file: bool = False  # the axis chooses the base spec file itself (`specs:` list)

    def label(self) -> str:
        if self.spec_file:
            return "spec"
        return f"replace:{self.replace}" if self.replace else format_path(self.path)

    def apply(self, spec_data: dict, value: Any, where: Where, source: str) -> None:
        """Write ``value`` here in ``spec_data`` (in place); a spec-file target writes nothing."""
        if self.spec_file:
            return
        if self.replace is not None:
            replace_layers(spec_data, self.replace, value, where, source)
            return
        set_path(spec_data, self.path, value, where, source)


@dataclass(frozen=True)
class Axis:
    """A swept dimension: its name, where it writes, and its values (grid) or distribution (random)."""

    name: str  # the key in the sweep file; for a path axis the path itself
    targets: tuple[Target, ...]
    values: tuple = ()  # the grid's values, or the choices of a `choice` distribution
    dist: str = "choice"  # one of DISTRIBUTIONS
    low: float | None = None  # uniform / loguniform / int bounds
    high: float | None = None
    where: Where | None = None  # the axis key in the sweep file, for errors

    @property
    def discrete(self) -> bool:
        return self.dist == "choice"

    def sample(self, rng: random.Random) -> Any:
        """One random value. Continuous draws keep 3 significant figures: readable trial names."""
        if self.dist == "choice":
            return self.values[rng.randrange(len(self.values))]
        if self.dist == "int":
            return rng.randint(int(self.low), int(self.high))
        if self.dist == "uniform":
            x = rng.uniform(self.low, self.high)
        else:  # loguniform: uniform in log space, for scales such as a learning rate
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return float(f"{x:.3g}")


@dataclass
class SweepPlan:
    """A parsed sweep file: base spec data, axes and the run settings."""

    name: str
    file: Path | None
    base: dict | None  # the base spec as plain data (None when `specs:` lists files)
    base_file: Path | None  # where `base` came from (None for an inline spec)
    spec_files: dict[str, Path]  # `specs:` list: axis value (file stem) -> file
    axes: list[Axis]
    fixed: dict[str, Any]  # `set:` path -> value, applied to every trial
    fixed_where: dict[str, Where]
    seeds: tuple[int, ...] | None  # None: the spec's own train.seed, one run per configuration
    trials: int | None  # random search sample size
    search_seed: int
    random_mode: bool
    metric: str | None  # None: accuracy when trials report it, else loss
    goal: str | None  # "max" / "min"; None: from the metric's name
    search: Any = None  # nncli.sweep.search.SearchSettings: Optuna's sampler and pruner; None: grid/random
    allow_custom: bool = True  # False: every trial spec with a Custom layer is refused (--no-custom)


def _grid_size(axes: list[Axis]) -> int:
    n = 1
    for a in axes:
        n *= len(a.values)
    return n


def _unique(label: str, taken) -> str:
    out, i = label, 2
    while out in taken:
        out, i = f"{label}-{i}", i + 1
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+\-]+", "_", str(text)).strip("_") or "x"


def _base_sources(plan: SweepPlan) -> list[tuple[str, dict]]:
    """(description, deep copy of the base spec data) for each base spec of the plan."""
    if plan.base is not None:
        label = str(plan.base_file) if plan.base_file else f"the inline spec of {plan.file}"
        return [(label, copy.deepcopy(plan.base))]
    out = []
    for f in plan.spec_files.values():
        out.append((str(f), copy.deepcopy(parse_yaml(read_text(f), str(f)).data)))
    return out
