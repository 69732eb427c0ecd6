"""A sweep plan -> its configurations: the grid's product, or a seeded random sample of it.

Each configuration is a value per axis, the base spec data with those values written in, and a
folder-safe label built from them (``depth-2_activation-Tanh``). Pure Python.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.spec.overrides import apply_override
from nncli.spec.source import parse_yaml, read_text
from nncli.sweep.plan import Axis, SweepPlan, _grid_size, _slug, _unique


@dataclass
class Config:
    """One point of the search: a value per axis and the spec data they give."""

    id: str  # folder-safe label built from the values, e.g. "depth-2_activation-Tanh"
    values: dict[str, Any]  # axis name -> value (the JSON's "overrides")
    spec_data: dict  # the base spec with every override applied (before the seed)
    source: str  # which base spec (a file, or "inline")
    base_dir: Path  # folder that relative paths in the base spec (data.path, Custom files) are relative to


def expand(plan: SweepPlan) -> list[Config]:
    """The configurations of a plan: the grid's product, or ``plan.trials`` random draws.

    Random draws come from ``random.Random(plan.search_seed)``: the same sweep file and seed give
    the same trials. When every axis is discrete, configurations are drawn without replacement
    (at most the grid's size); a continuous axis draws independently each time.

    Returns:
        Configs in a fixed order, with their overrides applied (paths were checked by
        :func:`~nncli.sweep.parse.load_sweep`).
    """
    axes = plan.axes
    if not plan.random_mode:
        combos = [dict(zip([a.name for a in axes], vals)) for vals in itertools.product(*(a.values for a in axes))]
    else:
        rng = random.Random(plan.search_seed)
        n = plan.trials or 1
        if all(a.discrete for a in axes):
            size = _grid_size(axes)
            picks = rng.sample(range(size), min(n, size))
            combos = []
            for index in picks:
                vals = {}
                for a in reversed(axes):  # mixed-radix digits of `index`, last axis fastest as in product()
                    index, digit = divmod(index, len(a.values))
                    vals[a.name] = a.values[digit]
                combos.append({a.name: vals[a.name] for a in axes})
        else:
            combos = [{a.name: a.sample(rng) for a in axes} for _ in range(n)]
    ids: set[str] = set()
    return [config_for(plan, values, ids) for values in combos]


def config_for(plan: SweepPlan, values: dict[str, Any], ids: set[str]) -> Config:
    """The configuration of one point (axis name -> value), its label unique among ``ids`` (added)."""
    axes = plan.axes
    short = _short_names(axes)
    if plan.base is not None:
        data = copy.deepcopy(plan.base)
        source = str(plan.base_file) if plan.base_file else f"the inline spec of {plan.file}"
        base_dir = (
            plan.base_file.parent if plan.base_file else (plan.file.resolve().parent if plan.file else Path.cwd())
        )
    else:
        f = plan.spec_files[values["spec"]]
        data, source, base_dir = parse_yaml(read_text(f), str(f)).data, str(f), f.resolve().parent
    for k, v in plan.fixed.items():
        apply_override(data, k, v, where=plan.fixed_where[k], source=source)
    for a in axes:
        for t in a.targets:
            t.apply(data, values[a.name], a.where, source)
    label = "_".join(f"{short[a.name]}-{_slug(_value_label(values[a.name]))}" for a in axes)
    if len(label) > 80:  # long values (inline layers) would make unwieldy folder names
        label = label[:70] + "-" + hashlib.sha256(label.encode()).hexdigest()[:8]
    label = _unique(label, ids)
    ids.add(label)
    return Config(label, values, data, source, Path(base_dir).resolve())


def _value_label(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:  # a layer {LeakyReLU: {...}}: its type and args
        ((k, v),) = value.items()
        return k + ("".join(f"-{a}{b}" for a, b in v.items()) if isinstance(v, dict) else "")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _short_names(axes: list[Axis]) -> dict[str, str]:
    """A short label per axis for folder names: `out_features` for `layers[0].Linear.out_features`,
    `ReLU` for `replace:ReLU`, the name itself for a named axis; the full name where two collide."""
    out = {}
    for a in axes:
        t = a.targets[0]
        if len(a.targets) > 1 or a.name != t.label():
            out[a.name] = _slug(a.name)  # a named axis
        elif t.replace:
            out[a.name] = _slug(t.replace)
        elif t.spec_file:
            out[a.name] = "spec"
        else:
            out[a.name] = _slug(next(p for p in reversed(t.path) if isinstance(p, str)))
    labels = list(out.values())
    return {k: (v if labels.count(v) == 1 else _slug(k)) for k, v in out.items()}
