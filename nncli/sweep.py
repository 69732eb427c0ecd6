"""``nncli sweep``: train many variants of a spec and choose the one with the best validation metric.

The lecture's recipe: "split data into training and validation, train different architectures and
evaluate them on validation, choose the architecture with the lowest validation error". A sweep
file names a base spec (a file, an inline spec, or a list of spec files) and the fields to vary:

.. code-block:: yaml

    name: moons-depth-activation
    base: ../specs/moons-mlp.yaml         # or `spec: {...}` inline, or `specs: [a.yaml, b.yaml]`
    metric: accuracy                      # validation metric to rank by (accuracy: max, loss: min)
    seeds: [0, 1, 2]                      # each configuration trained once per seed: mean and spread
    set: {train.epochs: 20}               # fixed overrides applied to every trial
    grid:                                 # every combination (or `random:` / --trials N: a sample)
      layers[2].Repeat.times: [1, 2, 4]   # any spec field, by its path
      replace:ReLU: [ReLU, Sigmoid, Tanh] # every ReLU layer becomes this class
      width:                              # a named axis setting several fields to one value
        path: ["layers[0].Linear.out_features", "layers[2].Linear.out_features"]
        values: [16, 64]

Each trial is a normal ``nncli train`` run folder inside the sweep folder, named after its
overrides; its ``run.yaml`` records the sha256 of the trial's spec, so a rerun of the same command
skips the runs that already finished, continues those killed mid-way from their last checkpoint
and retrains only those whose spec changed. Test metrics are reported for the winner only: choosing on validation and reporting test
keeps the test set honest.

The plan (parsing the sweep file, expanding trials, applying overrides) is pure Python; torch is
imported only when trials are counted and trained.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from nncli.errors import InputError, NncliError, SpecError, did_you_mean
from nncli.files import write_atomic
from nncli.formatting import jsonable
from nncli.spec.source import Document, Where, format_path, parse_yaml, read_text

SWEEP_KEYS = ("name", "description", "base", "spec", "specs", "grid", "random", "seeds", "trials",
              "search_seed", "metric", "goal", "set")
# Random-search distributions: {choice: [..]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]},
# {int: [lo, hi]} (both ends included). A bare list in `random:` is a choice.
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
# Keys a spec may gain at its top level through an override (the spec contract's own keys).
_SPEC_TOP = ("name", "description", "input", "init", "layers", "data", "train")
_LAYER_LISTS = ("layers", "body", "shortcut")  # keys whose lists hold layer items
_PATH_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_STEP = re.compile(r"\[\s*(-?\d+)\s*\]|\.([A-Za-z_][A-Za-z0-9_]*)")
# Validation metrics a sweep can rank on, with the direction that is better; error = 1 - accuracy.
METRICS = {"accuracy": "max", "loss": "min", "error": "min"}
TRIAL_FILE = "trial.json"  # written into a trial's run folder when its training has finished
RESULT_FILE = "sweep.json"
BEST_SPEC = "best.yaml"


# -- the sweep file ----------------------------------------------------------------------------
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


def _found(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "nothing (null)"}.get(type(value), type(value).__name__)
    return kind if isinstance(value, (dict, list, type(None))) else f"{kind} ({value!r})"


def parse_path(text: str, where: Where | None = None) -> tuple:
    """``"layers[2].Repeat.times"`` -> ``("layers", 2, "Repeat", "times")``.

    Raises:
        SpecError: located at ``where`` when the text is not a path.
    """
    text = str(text).strip()
    where = where or Where(None, None, None, "")
    m = _PATH_HEAD.match(text)
    if not m:
        raise where.error(f"expected a spec path starting with a key (`layers`, `train`, `data`, ...), "
                          f"found {text!r}", "e.g. layers[2].Repeat.times, train.lr, data.noise")
    out: list = [m.group(0)]
    pos = m.end()
    while pos < len(text):
        m = _PATH_STEP.match(text, pos)
        if not m:
            raise where.error(f"expected a spec path like `layers[2].Repeat.times`, found {text!r} "
                              f"(cannot read {text[pos:]!r})")
        out.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return tuple(out)


def load_sweep(path: str | Path, *, trials: int | None = None, search_seed: int | None = None,
               extra_set: dict[str, Any] | None = None, metric: str | None = None) -> SweepPlan:
    """Read and validate a sweep file.

    Args:
        path: the sweep YAML file (see the module docstring for its format).
        trials: ``--trials N``: random search with N configurations (overrides the file's `trials`).
        search_seed: ``--seed``: the random search's seed (overrides `search_seed`, default 0).
        extra_set: ``--set PATH=VALUE`` overrides applied to every trial, after the file's `set:`.
        metric: ``--metric``: the validation metric to rank by.

    Returns:
        SweepPlan, with every axis path parsed and its base spec read.

    Raises:
        SpecError / InputError: located in the sweep file (or the base spec), exit code 2.

    Example:
        >>> plan = load_sweep("sweeps/moons-depth-activation.yaml")
        >>> [a.name for a in plan.axes]
        ['depth', 'activation']
    """
    path = Path(path)
    try:
        doc = parse_yaml(read_text(path), str(path))
    except SpecError as err:
        if "flow sequence" in err.message and "'['" in err.message and not err.hint:
            # `[layers[0].x, ...]`: YAML reads the inner `[` as a nested list
            err.hint = ('quote spec paths inside a [...] list: ["layers[0].Linear.out_features", ...], '
                        "or write the list one item per line (`- layers[0].Linear.out_features`)")
        raise
    return _SweepParser(doc, path.resolve().parent, path).plan(trials, search_seed, extra_set or {}, metric)


class _SweepParser:
    def __init__(self, doc: Document, base_dir: Path, file: Path | None) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.file = file

    def fail(self, path: tuple, message: str, hint: str | None = None, *, key: bool = False) -> SpecError:
        return self.doc.where(path, key=key).error(message, hint)

    def plan(self, trials, search_seed, extra_set, metric) -> SweepPlan:
        data = self.doc.data
        if not isinstance(data, dict):
            raise SpecError(f"expected a sweep file: a mapping with `base` (or `spec`/`specs`) and `grid` "
                            f"or `random`, found {_found(data)}", file=self.doc.file, line=1,
                            hint="e.g.\nbase: specs/moons-mlp.yaml\ngrid:\n  train.lr: [0.001, 0.01]")
        for key in data:
            if key not in SWEEP_KEYS:
                raise self.fail((key,), f"unknown key {key!r} in the sweep file",
                                did_you_mean(str(key), SWEEP_KEYS) or "allowed: " + ", ".join(SWEEP_KEYS), key=True)
        sources = [k for k in ("base", "spec", "specs") if k in data]
        if len(sources) != 1:
            raise self.fail((sources[1],) if len(sources) > 1 else (),
                            "expected exactly one of `base` (a spec file), `spec` (an inline spec) or "
                            f"`specs` (a list of spec files), found {', '.join(sources) or 'none'}",
                            key=bool(sources))
        name = data.get("name") or (self.file.stem if self.file else "sweep")
        if not isinstance(name, str):
            raise self.fail(("name",), f"expected a string, found {_found(name)}")
        base = base_file = None
        spec_files: dict[str, Path] = {}
        axes: list[Axis] = []
        if "base" in data:
            base_file, base = self.spec_file(data["base"], ("base",))
        elif "spec" in data:
            if not isinstance(data["spec"], dict):
                raise self.fail(("spec",), f"expected an inline spec (a mapping with `input` and `layers`), "
                                           f"found {_found(data['spec'])}")
            base = data["spec"]
            self.check_inline(base)
        else:
            files = data["specs"]
            if not isinstance(files, list) or not files:
                raise self.fail(("specs",), f"expected a list of spec files, found {_found(files)}")
            for i, item in enumerate(files):
                f, _ = self.spec_file(item, ("specs", i))
                label = _unique(_slug(f.stem), spec_files)
                spec_files[label] = f
            axes.append(Axis("spec", (Target(spec_file=True),), tuple(spec_files),
                             where=self.doc.where(("specs",), key=True)))
        for section in ("grid", "random"):
            if section in data:
                axes.extend(self.axes(data[section], section))
        if not axes:
            raise self.fail((), "nothing to sweep: expected a `grid:` or `random:` section (or `specs:`)",
                            "e.g.\ngrid:\n  train.lr: [0.001, 0.01]\n  replace:ReLU: [ReLU, Tanh]")
        names = [a.name for a in axes]
        for a in axes:
            if names.count(a.name) > 1:
                raise a.where.error(f"axis {a.name!r} is given twice (in `grid` and `random`)")
        _check_overlaps(axes)
        fixed, fixed_where = {}, {}
        if "set" in data:
            if not isinstance(data["set"], dict):
                raise self.fail(("set",), f"expected a mapping of spec path to value, found {_found(data['set'])}",
                                "e.g. set: {train.epochs: 10, data.n: 500}")
            for k, v in data["set"].items():
                fixed[k], fixed_where[k] = v, self.doc.where(("set", k), key=True)
        for k, v in extra_set.items():
            fixed[k], fixed_where[k] = v, Where(None, None, None, f"--set {k}")
        seeds = data.get("seeds")
        if seeds is not None:
            if isinstance(seeds, int) and not isinstance(seeds, bool):
                seeds = list(range(seeds)) if seeds > 0 else seeds  # `seeds: 3` = [0, 1, 2]
            if (not isinstance(seeds, list) or not seeds
                    or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
                raise self.fail(("seeds",), f"expected a list of seeds (integers >= 0) or a count, found {_found(seeds)}")
            if len(set(seeds)) != len(seeds):
                raise self.fail(("seeds",), f"expected distinct seeds, found {seeds}")
            seeds = tuple(seeds)
        n_trials = trials if trials is not None else data.get("trials")
        if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
            where = ("trials",) if trials is None else ()
            raise (self.fail(where, f"expected `trials` to be an integer >= 1, found {_found(n_trials)}")
                   if trials is None else InputError(f"--trials: expected an integer >= 1, found {n_trials}"))
        # a `random:` section, `trials:` in the file or --trials: sample instead of the full grid
        random_mode = "random" in data or n_trials is not None
        if random_mode and n_trials is None:
            if any(not a.discrete for a in axes):
                raise self.fail(("random",), "random search needs a number of trials: `trials: N` in the "
                                             "sweep file or --trials N", key=True)
        if "random" in data and n_trials is None:
            n_trials = _grid_size(axes)
        s_seed = search_seed if search_seed is not None else data.get("search_seed", 0)
        if isinstance(s_seed, bool) or not isinstance(s_seed, int):
            raise self.fail(("search_seed",), f"expected an integer, found {_found(s_seed)}")
        metric = metric if metric is not None else data.get("metric")
        if metric is not None and (not isinstance(metric, str) or not metric.strip()):
            raise self.fail(("metric",), f"expected a metric name (accuracy, loss), found {_found(metric)}")
        if metric is not None:
            metric = metric.strip()
            if metric.startswith("val."):
                metric = metric[4:]  # `val.accuracy` reads as the same thing: sweeps rank on validation
        if metric is not None and metric not in METRICS:
            hint = did_you_mean(metric, METRICS) or "choices: " + ", ".join(METRICS)
            if "metric" in data and metric == str(data["metric"]).strip().removeprefix("val."):
                raise self.fail(("metric",), f"unknown metric {metric!r}", hint)
            raise InputError(f"--metric: unknown metric {metric!r}", hint=hint)
        goal = data.get("goal")
        if goal is not None and goal not in ("max", "min"):
            raise self.fail(("goal",), f"expected `max` or `min`, found {_found(goal)}")
        plan = SweepPlan(
            name=name, file=self.file, base=base, base_file=base_file, spec_files=spec_files, axes=axes,
            fixed=fixed, fixed_where=fixed_where, seeds=seeds, trials=n_trials, search_seed=s_seed,
            random_mode=random_mode, metric=metric, goal=goal)
        # Every path is checked against the spec now, before anything trains: a typo is exit 2 at once.
        for source, spec_data in _base_sources(plan):
            for k, v in fixed.items():
                target = Target(path=parse_path(k, fixed_where[k]))
                _apply(spec_data, target, v, fixed_where[k], source)
            for a in axes:
                for t in a.targets:
                    if not t.spec_file:
                        probe = a.values[0] if a.values else (a.low if a.dist != "int" else int(a.low))
                        _apply(copy.deepcopy(spec_data), t, probe, a.where, source)
        return plan

    def spec_file(self, value: Any, path: tuple) -> tuple[Path, dict]:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected the path of a spec file, found {_found(value)}")
        f = Path(value).expanduser()
        if not f.is_absolute():
            f = self.base_dir / f
        if not f.is_file():
            raise self.doc.where(path).error(f"no such spec file: {f}",
                                             "paths in a sweep file are relative to the sweep file's folder",
                                             kind=InputError)
        from nncli.spec import load_spec

        load_spec(f)  # validate the base now: its own errors point into its own file
        return f, parse_yaml(read_text(f), str(f)).data

    def check_inline(self, base: dict) -> None:
        """Validate an inline spec now, with its errors located in the sweep file."""
        from nncli.spec import parse_spec

        try:
            parse_spec(yaml.safe_dump(base, sort_keys=False), file=str(self.file), base_dir=self.base_dir)
        except SpecError as err:
            try:
                inner = parse_path(err.spec_path) if err.spec_path else ()
            except SpecError:
                inner = ()
            where = self.doc.where(("spec",) + inner)
            raise SpecError(err.message, file=where.file, line=where.line, column=where.column,
                            spec_path=where.spec_path, hint=err.hint) from None

    def axes(self, section: Any, kind: str) -> list[Axis]:
        if not isinstance(section, dict) or not section:
            raise self.fail((kind,), f"expected `{kind}` to be a mapping of spec path (or axis name) to "
                                     f"{'values' if kind == 'grid' else 'a distribution'}, found {_found(section)}",
                            "e.g. train.lr: [0.001, 0.01]" if kind == "grid" else "e.g. train.lr: {loguniform: [1e-4, 1e-1]}")
        out = []
        for key, spec in section.items():
            where = self.doc.where((kind, key), key=True)
            vpath = (kind, key)
            if isinstance(spec, dict) and ("path" in spec or "replace" in spec):
                allowed = ("path", "replace", "values") + (DISTRIBUTIONS if kind == "random" else ())
                for k in spec:
                    if k not in allowed:
                        raise self.fail(vpath + (k,), f"unknown key {k!r} in axis {key!r}",
                                        did_you_mean(str(k), allowed) or "allowed: " + ", ".join(allowed), key=True)
                if "path" in spec and "replace" in spec:
                    raise self.fail(vpath, "expected `path` or `replace` in an axis, not both")
                if "path" in spec:
                    paths = spec["path"] if isinstance(spec["path"], list) else [spec["path"]]
                    if not paths or not all(isinstance(p, str) for p in paths):
                        raise self.fail(vpath + ("path",), f"expected a spec path or a list of them, found {_found(spec['path'])}")
                    pwhere = self.doc.where(vpath + ("path",))
                    targets = tuple(Target(path=parse_path(p, pwhere)) for p in paths)
                else:
                    if not isinstance(spec["replace"], str):
                        raise self.fail(vpath + ("replace",), f"expected a layer type name, found {_found(spec['replace'])}")
                    targets = (Target(replace=spec["replace"].strip()),)
                rest = {k: v for k, v in spec.items() if k not in ("path", "replace")}
                if len(rest) != 1:
                    raise self.fail(vpath, f"expected `values` {'or one distribution ' if kind == 'random' else ''}"
                                           f"in axis {key!r}, found {', '.join(rest) or 'none'}")
                ((dkey, dval),) = rest.items()
                out.append(self.values(str(key), targets, dkey if dkey != "values" else None, dval,
                                       vpath + (dkey,), where, kind))
                continue
            key_s = str(key)
            if key_s.startswith("replace:"):
                layer_type = key_s[len("replace:"):].strip()
                if not layer_type:
                    raise self.fail(vpath, "expected `replace:<LayerType>`, e.g. `replace:ReLU`", key=True)
                targets = (Target(replace=layer_type),)
            else:
                targets = (Target(path=parse_path(key_s, where)),)
            dkey = None
            if isinstance(spec, dict) and kind == "random" and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
                ((dkey, spec),) = spec.items()
                vpath = vpath + (dkey,)
            out.append(self.values(key_s, targets, dkey, spec, vpath, where, kind))
        return out

    def values(self, name, targets, dist, value, vpath, where, kind) -> Axis:
        if dist is None or dist == "choice":
            if not isinstance(value, list) or not value:
                raise self.fail(vpath, f"expected a non-empty list of values for {name!r}, found {_found(value)}",
                                "a grid axis lists its values: [1, 2, 4]"
                                + ("; a random axis may also be {uniform: [lo, hi]}" if kind == "random" else ""))
            seen = []
            for v in value:
                if v in seen:
                    raise self.fail(vpath, f"value {v!r} is listed twice for {name!r}")
                seen.append(v)
            if any(t.replace for t in targets):
                for i, v in enumerate(value):
                    if not _is_layer_item(v):
                        raise self.fail(vpath + (i,), f"expected a layer (a class name like `Tanh` or "
                                                      f"`{{LeakyReLU: {{negative_slope: 0.1}}}}`), found {_found(v)}")
            return Axis(name, targets, tuple(value), "choice", where=where)
        if kind != "random":
            raise self.fail(vpath, f"distributions belong in `random:`; a grid axis lists its values")
        if (not isinstance(value, list) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
            raise self.fail(vpath, f"expected [low, high] for {dist}, found {_found(value)}")
        low, high = value
        if low > high:
            raise self.fail(vpath, f"expected low <= high, found [{low}, {high}]")
        if dist == "loguniform" and low <= 0:
            raise self.fail(vpath, f"expected loguniform bounds > 0, found [{low}, {high}]")
        if dist == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise self.fail(vpath, f"expected integer bounds for int, found [{low}, {high}]")
        if any(t.replace for t in targets):
            raise self.fail(vpath, "a `replace` axis takes layer names: use `values` or `choice`")
        return Axis(name, targets, (), dist, float(low), float(high), where=where)


def _check_overlaps(axes: list[Axis]) -> None:
    """Two axes writing the same field (or one inside the other) would silently fight: refuse."""
    seen: list[tuple[tuple, Axis]] = []
    for a in axes:
        for t in a.targets:
            if not t.path:
                continue
            for path, other in seen:
                n = min(len(path), len(t.path))
                if path[:n] == t.path[:n] and other is not a:
                    raise a.where.error(f"axis {a.name!r} writes {format_path(t.path)}, which axis {other.name!r} "
                                        f"also writes ({format_path(path)})",
                                        "give each field to one axis; a named axis can set several paths")
            seen.append((t.path, a))


def _is_layer_item(v: Any) -> bool:
    return (isinstance(v, str) and bool(v.strip())) or (isinstance(v, dict) and len(v) == 1
                                                         and isinstance(next(iter(v)), str))


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


# -- overrides on plain spec data ----------------------------------------------------------------
def apply_override(spec_data: dict, path: str | tuple, value: Any, *, where: Where | None = None,
                   source: str = "the spec") -> dict:
    """Set one field of a spec (as plain YAML data) in place, before validation.

    Args:
        spec_data: the spec as loaded from YAML (a dict); modified in place.
        path: ``"layers[2].Repeat.times"``, ``"train.lr"``, ``"data.noise"`` (or a parsed tuple);
            ``"replace:ReLU"`` swaps every ReLU layer (also inside Residual and Repeat) for ``value``.
        value: the new value (for a replace: a layer, ``"Tanh"`` or ``{"LeakyReLU": {...}}``).
        where: where the override was written (the error's location); ``source`` names the spec.

    Returns:
        ``spec_data``.

    Raises:
        SpecError: the path does not exist in the spec, with what is there and a did-you-mean.

    Example:
        >>> d = {"input": [2], "layers": [{"Linear": {"out_features": 8}}, "ReLU"]}
        >>> apply_override(d, "layers[0].Linear.out_features", 32)["layers"][0]
        {'Linear': {'out_features': 32}}
        >>> apply_override(d, "replace:ReLU", "Tanh")["layers"][1]
        'Tanh'
    """
    where = where or Where(None, None, None, str(path))
    if isinstance(path, str):
        target = (Target(replace=path[len("replace:"):].strip()) if path.startswith("replace:")
                  else Target(path=parse_path(path, where)))
    else:
        target = Target(path=tuple(path))
    _apply(spec_data, target, value, where, source)
    return spec_data


def _apply(spec_data: dict, target: Target, value: Any, where: Where, source: str) -> None:
    if target.spec_file:
        return
    if target.replace is not None:
        found: list[str] = []
        if _replace_layers(spec_data.get("layers"), target.replace, value, found) == 0:
            hint = did_you_mean(target.replace, sorted(set(found)))
            raise where.error(f"no {target.replace} layer in {source} to replace",
                              hint or ("layer types there: " + ", ".join(sorted(set(found))) if found else None))
        return
    _set_path(spec_data, target.path, value, where, source)


def _layer_type(item: Any) -> str | None:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return None


def _replace_layers(layers: Any, old: str, new: Any, seen: list[str]) -> int:
    """Swap every layer item of type ``old`` (recursively); returns how many were swapped."""
    if not isinstance(layers, list):
        return 0
    n = 0
    for i, item in enumerate(layers):
        kind = _layer_type(item)
        if kind is None:
            continue
        seen.append(kind)
        if kind == old:
            new_item = copy.deepcopy(new)
            args = item.get(kind) if isinstance(item, dict) else None
            if isinstance(new_item, str) and isinstance(args, dict) and "name" in args:
                new_item = {new_item: {"name": args["name"]}}  # keep the label; other args belonged to `old`
            layers[i] = new_item
            n += 1
            continue
        args = item.get(kind) if isinstance(item, dict) else None
        if isinstance(args, dict):
            for key in _LAYER_LISTS:
                n += _replace_layers(args.get(key), old, new, seen)
    return n


def _set_path(root: dict, path: tuple, value: Any, where: Where, source: str) -> None:
    node: Any = root
    layer_list = False  # is `node` a list of layer items?
    for depth, part in enumerate(path):
        here = format_path(path[:depth]) or "the top level"
        last = depth == len(path) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                raise where.error(f"{here} of {source} is {_found(node)}, not a list: cannot index [{part}]")
            if not -len(node) <= part < len(node):
                raise where.error(f"{here} of {source} has {len(node)} item(s) (indices 0..{len(node) - 1}), "
                                  f"found index {part}")
            if last:
                node[part] = copy.deepcopy(value)
                return
            item = node[part]
            if layer_list and isinstance(item, str):
                # a bare layer (`- ReLU`) becomes `{ReLU: {}}` so its arguments can be set
                item = node[part] = {item.strip(): {}}
            if layer_list and isinstance(item, dict) and len(item) == 1:
                kind = next(iter(item))
                nxt = path[depth + 1]
                if nxt != kind:
                    raise where.error(f"{format_path(path[:depth + 1])} of {source} is a {kind} layer, "
                                      f"found {nxt!r} in the path",
                                      f"write the layer's type: {format_path(path[:depth + 1] + (kind,))}."
                                      "<argument>")
                if item[kind] is None:
                    item[kind] = {}
            node, layer_list = item, False
            continue
        if not isinstance(node, dict):
            raise where.error(f"{here} of {source} is {_found(node)}, not a mapping: no key {part!r}")
        if part not in node:
            if (depth == 0 and part in _SPEC_TOP) or _open_mapping(path[:depth], part):
                # optional sections (train, data, init) and a layer's arguments may gain keys; what
                # the key means is checked later by the spec parser, the builder or the trainer
                node[part] = copy.deepcopy(value) if last else {}
                if last:
                    return
            else:
                keys = [str(k) for k in node]
                raise where.error(f"no {part!r} at {here} of {source}",
                                  did_you_mean(str(part), keys) or ("keys there: " + ", ".join(keys) if keys else None))
        if last:
            node[part] = copy.deepcopy(value)
            return
        if node[part] is None:
            node[part] = {}
        layer_list = part in _LAYER_LISTS and isinstance(node[part], list)
        node = node[part]


def _open_mapping(parent: tuple, key: str) -> bool:
    """May an override add ``key`` under ``parent``? Into train, data and a layer's arguments: yes.

    The top level takes only the spec contract's keys and nncli's composite layers only their
    optional ones, so a misspelt key there is refused at once with a did-you-mean; a torch
    layer's new argument is checked against torch by the builder.
    """
    if not parent:
        return False
    if parent[0] in ("train", "data", "init"):
        return True
    if len(parent) >= 3 and isinstance(parent[-2], int):  # layers[i].Type: its argument mapping
        if parent[-1] in ("Repeat", "Residual", "Custom"):
            return key in ("shortcut", "args", "name", "init")
        return True
    return parent[-1] in ("init", "args")


# -- expansion into configurations and trials ---------------------------------------------------
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
        :func:`load_sweep`).
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
    configs: list[Config] = []
    ids: set[str] = set()
    short = _short_names(axes)
    for values in combos:
        if plan.base is not None:
            data = copy.deepcopy(plan.base)
            source = str(plan.base_file) if plan.base_file else f"the inline spec of {plan.file}"
            base_dir = plan.base_file.parent if plan.base_file else (plan.file.resolve().parent if plan.file else Path.cwd())
        else:
            f = plan.spec_files[values["spec"]]
            data, source, base_dir = parse_yaml(read_text(f), str(f)).data, str(f), f.resolve().parent
        for k, v in plan.fixed.items():
            apply_override(data, k, v, where=plan.fixed_where[k], source=source)
        for a in axes:
            for t in a.targets:
                _apply(data, t, values[a.name], a.where, source)
        label = "_".join(f"{short[a.name]}-{_slug(_value_label(values[a.name]))}" for a in axes)
        if len(label) > 80:  # long values (inline layers) would make unwieldy folder names
            label = label[:70] + "-" + hashlib.sha256(label.encode()).hexdigest()[:8]
        label = _unique(label, ids)
        ids.add(label)
        configs.append(Config(label, values, data, source, Path(base_dir).resolve()))
    return configs


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


def trial_spec_data(config: Config, seed: int | None) -> dict:
    """The spec a trial trains: the config's data with ``train.seed`` set and relative paths made
    absolute (the trial's spec file lives in the sweep folder, not next to the base spec)."""
    data = copy.deepcopy(config.spec_data)
    if seed is not None:
        train = data.get("train")
        if not isinstance(train, dict):
            train = data["train"] = {}
        train["seed"] = seed
    section = data.get("data")
    if isinstance(section, dict) and isinstance(section.get("path"), str):
        p = Path(section["path"]).expanduser()
        if not p.is_absolute():
            section["path"] = str(config.base_dir / p)
    _absolute_custom(data.get("layers"), config.base_dir)
    return data


def _absolute_custom(layers: Any, base_dir: Path) -> None:
    if not isinstance(layers, list):
        return
    for item in layers:
        if not (isinstance(item, dict) and len(item) == 1):
            continue
        ((kind, args),) = item.items()
        if not isinstance(args, dict):
            continue
        if kind == "Custom" and isinstance(args.get("target"), str) and ":" in args["target"]:
            file, cls = args["target"].rsplit(":", 1)
            if file.endswith(".py") and not Path(file).expanduser().is_absolute():
                args["target"] = f"{base_dir / file}:{cls}"
        for key in _LAYER_LISTS:
            _absolute_custom(args.get(key), base_dir)


def spec_hash(data: dict) -> str:
    """A stable fingerprint of a trial's spec: key order and YAML formatting do not change it."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- results -------------------------------------------------------------------------------------
FINISHED = ("completed", "early_stopped")  # train statuses whose metrics count
_DONE = FINISHED + ("nonfinite",)  # statuses that end a trial for good: a rerun does not repeat them


@dataclass
class RunRecord:
    """One training run of a configuration (one seed)."""

    seed: int | None
    run_dir: str
    status: str  # ok, failed, pending (--dry-run), skipped (not run: the sweep stopped first)
    val: dict = field(default_factory=dict)  # {"loss", "accuracy"} with the best weights
    seconds: float | None = None  # train's duration_s (loop and evaluation); wall time for a failure
    best_epoch: int | None = None
    epochs: int | None = None
    error: str | None = None
    cached: bool = False  # finished by an earlier invocation, read back from its run folder
    test: dict = field(default_factory=dict, repr=False)  # kept out of reports except the winner's

    def to_json(self) -> dict:
        return {"seed": self.seed, "run_dir": self.run_dir, "status": self.status, "val": self.val,
                "seconds": self.seconds, "best_epoch": self.best_epoch, "epochs": self.epochs,
                "error": self.error, "cached": self.cached}


@dataclass
class TrialResult:
    """One configuration: its overrides, its runs (one per seed) and their aggregate."""

    id: str
    overrides: dict[str, Any]
    spec_path: str  # the configuration's spec (seed of the first run)
    runs: list[RunRecord]
    index: int = 0  # position in the plan (the grid's order), for plots and stable listings
    params: int | None = None
    flops: int | None = None  # forward FLOPs per example
    status: str = "pending"  # ok (every seed finished), partial, failed, pending
    val: dict = field(default_factory=dict)  # mean over the finished seeds
    val_std: dict = field(default_factory=dict)  # sample standard deviation over seeds (0 for one)
    seconds: float | None = None  # summed over seeds
    rank: int | None = None  # 1 = best; None when not ranked (not every seed finished)
    error: str | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "rank": self.rank, "status": self.status, "overrides": self.overrides,
                "val": self.val, "val_std": self.val_std, "params": self.params, "flops": self.flops,
                "seconds": self.seconds, "error": self.error, "spec_path": self.spec_path,
                "runs": [r.to_json() for r in self.runs]}


@dataclass
class SweepResult:
    """Everything ``nncli sweep`` reports; ``to_json`` is its documented schema."""

    name: str
    out_dir: str
    metric: str  # the validation metric ranked on: accuracy, loss
    goal: str  # max or min
    axes: list[str]
    seeds: list | None
    trials: list[TrialResult]  # ranked first (best first), then the rest in plan order
    best: dict | None  # {"id", "spec_path", "run_dir", "val", "test", "overrides"}
    search: str = "grid"  # grid (every combination) or random (a seeded sample)
    ran: int = 0  # runs trained by this invocation
    cached: int = 0  # runs read back from an earlier invocation
    failed: int = 0
    dry_run: bool = False
    plot: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return jsonable({
            "name": self.name, "out_dir": self.out_dir, "metric": self.metric, "goal": self.goal,
            "axes": self.axes, "search": self.search, "seeds": self.seeds, "dry_run": self.dry_run,
            "trials": [t.to_json() for t in self.trials], "best": self.best,
            "ran": self.ran, "cached": self.cached, "failed": self.failed, "plot": self.plot,
            "seconds": self.seconds,
        })


@dataclass
class SweepEvent:
    """Progress for the CLI (the tool itself never prints)."""

    kind: str  # "plan", "start", "done"
    done: int  # runs finished so far (cached ones included)
    total: int
    trial: str | None = None
    run: RunRecord | None = None
    message: str | None = None


# -- files ---------------------------------------------------------------------------------------
def spec_text(data: dict, header: str | None = None) -> str:
    """A spec's data as YAML in the spec contract's key order, optionally under a comment header."""
    order = {k: i for i, k in enumerate(_SPEC_TOP)}
    ordered = dict(sorted(data.items(), key=lambda kv: order.get(kv[0], len(order))))
    body = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=100)
    if header:
        body = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
    return body


# -- running -------------------------------------------------------------------------------------


@dataclass
class _Run:
    """A run to do: where its spec and folder are, and how to start it."""

    trial: TrialResult
    record: RunRecord
    spec_file: Path
    text: str  # the trial spec's YAML; its sha256 is what run.yaml records
    resume: bool = False


def run_sweep(plan: SweepPlan, out_dir: str | Path | None = None, *, workers: int = 1, device: str = "auto",
              dry_run: bool = False, progress: Callable[[SweepEvent], None] | None = None) -> SweepResult:
    """Train every trial of a sweep (skipping finished ones) and rank them on validation.

    Args:
        plan: from :func:`load_sweep`.
        out_dir: the sweep folder; default ``runs/sweep-<name>``, so rerunning the same command
            resumes it. Trial specs go to ``<out>/specs/``, run folders to ``<out>/<trial>/``.
        workers: parallel worker processes (spawned; each gets ``cpu_count // workers`` torch
            threads). 1 trains in this process.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for every trial.
        dry_run: expand, validate and count the trials, train nothing.
        progress: called with a :class:`SweepEvent` as runs start and finish.

    Returns:
        SweepResult, trials ranked best first. The winner's spec is written to ``<out>/best.yaml``
        and the result to ``<out>/sweep.json`` (both atomically).

    Raises:
        SpecError / InputError: an override gives an invalid spec, or no trial can be built (exit 2).
        KeyboardInterrupt: a run was interrupted; finished runs are kept for the next invocation.

    Example:
        >>> result = run_sweep(load_sweep("sweeps/moons-depth-activation.yaml"), workers=2)
        >>> result.best["id"], result.best["test"]["accuracy"]
    """
    from nncli.spec import parse_spec

    started = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"sweep-{_slug(plan.name)}"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: expected a folder, found a file")
    notify = progress or (lambda event: None)
    configs = expand(plan)
    seeds: list = list(plan.seeds) if plan.seeds else [None]

    trials: list[TrialResult] = []
    runs: list[_Run] = []
    specs: dict[str, Any] = {}
    for config in configs:
        trial = None
        for seed in seeds:
            name = config.id + (f"-s{seed}" if seed is not None else "")
            text = spec_text(trial_spec_data(config, seed),
                             f"nncli sweep {plan.name}: trial {config.id}"
                             + (f", seed {seed}" if seed is not None else "")
                             + "\noverrides: " + json.dumps(config.values, default=str))
            spec_file = out / "specs" / f"{name}.yaml"
            if not dry_run and (not spec_file.is_file() or spec_file.read_text(encoding="utf-8") != text):
                spec_file.parent.mkdir(parents=True, exist_ok=True)  # also creates `out`
                write_atomic(spec_file, text, durable=True)
            try:  # structure checked now: a bad value is exit 2 before anything trains
                spec = parse_spec(text, file=str(spec_file), base_dir=config.base_dir)
            except SpecError as err:
                err.hint = ((err.hint + "\n  ") if err.hint else "") + \
                    f"written by the sweep for trial {config.id}: " + \
                    ", ".join(f"{k}={v!r}" for k, v in config.values.items())
                raise
            if trial is None:
                trial = TrialResult(config.id, dict(config.values), str(spec_file), [], index=len(trials))
                specs[config.id] = spec  # counted below, once per configuration
                trials.append(trial)
            record = RunRecord(seed, str(out / name), "pending")
            trial.runs.append(record)
            runs.append(_Run(trial, record, spec_file, text))
    errors = _count(trials, specs)
    if len(errors) == len(trials):
        raise errors[trials[0].id]  # nothing can be built: a sweep-file mistake, not a result

    pending: list[_Run] = []
    for run in runs:
        if run.trial.status == "failed":
            run.record.status = "failed"
            run.record.error = run.trial.error
            continue
        state = _run_state(Path(run.record.run_dir), run.text, clear=not dry_run)
        if state["finished"]:
            _fill(run.record, state["report"], None)
            run.record.cached = True
        else:
            run.resume = state["resume"]
            pending.append(run)
    total = len(runs)
    done = total - len(pending)
    notify(SweepEvent("plan", done, total, message=f"{len(trials)} configuration(s) x {len(seeds)} seed(s); "
                                                     f"{done} run(s) already finished in {out}"))
    ran = 0
    if not dry_run and pending:
        ran = _execute(pending, workers, device, notify, done, total)
    elif dry_run:
        for run in pending:
            run.record.status = "pending"
    result = _summarise(plan, out, trials, ran, dry_run)
    if not dry_run and result.best is not None:
        _write_best(plan, out, result, configs)
    result.seconds = time.perf_counter() - started
    if not dry_run:
        write_atomic(out / RESULT_FILE, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n",
                     durable=True)
    return result


def _count(trials: list[TrialResult], specs: dict) -> dict[str, NncliError]:
    """Parameters and forward FLOPs per example of each configuration, on meta tensors.

    Returns the build errors by trial id (e.g. a kernel larger than the feature map at some depth):
    those configurations are recorded as failed and the others go on.
    """
    from nncli.params import count

    errors = {}
    for trial in trials:
        try:
            report = count(specs[trial.id], batch_size=1)
            trial.params, trial.flops = report.total, report.flops_per_example
        except NncliError as err:
            trial.status, trial.error, errors[trial.id] = "failed", str(err), err
    return errors


def _run_state(run_dir: Path, text: str, *, clear: bool = True) -> dict:
    """What the run folder says: finished (with its report), resumable, or to start afresh
    (a stale folder is then removed, unless ``clear`` is false: a dry run changes nothing)."""
    sha = hashlib.sha256(text.encode()).hexdigest()
    meta_path, report_path = run_dir / "run.yaml", run_dir / "report.json"
    meta = None
    if meta_path.is_file():
        try:
            meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            meta = None
    same = isinstance(meta, dict) and isinstance(meta.get("spec"), dict) and meta["spec"].get("sha256") == sha
    if same and report_path.is_file():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = None
        if isinstance(report, dict) and report.get("status") in _DONE:
            return {"finished": True, "report": report}
    if same and (run_dir / "checkpoints" / "last.pt").is_file():
        return {"finished": False, "resume": True}  # killed mid-run: continue from its last checkpoint
    if run_dir.exists() and clear:
        _clear_run_dir(run_dir)
    return {"finished": False, "resume": False}


def _clear_run_dir(run_dir: Path) -> None:
    """Remove a stale trial folder (another spec, or a run killed before its first checkpoint).

    Only folders that look like nncli run folders are removed: this is the sweep's own output.
    """
    import shutil

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: expected a trial run folder, found a file")
    names = {p.name for p in run_dir.iterdir()}
    if names - {"run.yaml", "spec.yaml", "checkpoints", "metrics.jsonl", "metrics.csv", "report.json",
                TRIAL_FILE, "tensorboard"} - {n for n in names if n.startswith(".")}:
        raise InputError(f"{run_dir} holds files nncli did not write; refusing to replace it",
                         hint="move it away, or give the sweep another --out")
    shutil.rmtree(run_dir)


def _fill(record: RunRecord, report: dict, seconds: float | None) -> None:
    """Copy a train report (TrainResult.to_json()) into a run record."""
    status = report.get("status")
    record.status = "ok" if status in FINISHED else "failed"
    record.val = _metrics(report.get("val") or {})
    record.test = _metrics(report.get("test") or {})
    record.best_epoch = report.get("best_epoch")
    record.epochs = report.get("epochs")
    # train's own clock (model, loop, evaluation): comparable across trials, unlike wall time,
    # which also holds each worker's one-off start-up (imports, first meta-tensor call)
    record.seconds = report.get("duration_s") if report.get("duration_s") is not None else seconds
    if record.status == "failed":
        record.error = report.get("message") or f"training ended with status {status}"


def _metrics(split: dict) -> dict:
    out = {k: split[k] for k in ("loss", "accuracy") if split.get(k) is not None}
    if "accuracy" in out:
        out["error"] = 1.0 - out["accuracy"]
    return out


def _execute(pending: list[_Run], workers: int, device: str, notify, done: int, total: int) -> int:
    """Train the pending runs, in this process or in ``workers`` spawned processes."""
    tasks = [{"spec": str(r.spec_file), "run_dir": r.record.run_dir, "resume": r.resume, "device": device}
             for r in pending]
    ran = 0

    def finished(run: _Run, outcome: dict) -> None:
        nonlocal done, ran
        if outcome.get("status") == "interrupted":
            raise KeyboardInterrupt
        rec = run.record
        if "report" in outcome:
            _fill(rec, outcome["report"], outcome["seconds"])
        else:
            rec.status, rec.error, rec.seconds = "failed", outcome["error"], outcome["seconds"]
        if Path(rec.run_dir).is_dir():
            write_atomic(Path(rec.run_dir) / TRIAL_FILE, json.dumps(jsonable(
                {"trial": run.trial.id, "seed": rec.seed, "overrides": run.trial.overrides,
                 "status": rec.status, "seconds": rec.seconds, "error": rec.error,
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}), indent=2) + "\n", durable=True)
        done, ran = done + 1, ran + 1
        notify(SweepEvent("done", done, total, run.trial.id, rec))

    if workers <= 1:
        for run, task in zip(pending, tasks):
            notify(SweepEvent("start", done, total, run.trial.id, run.record))
            finished(run, run_trial(task))
        return ran

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)  # no oversubscription: cores split evenly
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        futures = {}
        for run, task in zip(pending, tasks):
            futures[pool.submit(run_trial, task)] = run
            notify(SweepEvent("start", done, total, run.trial.id, run.record))
        remaining = set(futures)
        while remaining:
            complete, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in complete:
                try:
                    outcome = fut.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    outcome = {"status": "error", "error": f"worker process died: {exc}", "seconds": None}
                finished(futures[fut], outcome)
    except BaseException:  # Ctrl-C, or a run came back interrupted: stop every worker now
        for child in multiprocessing.active_children():
            child.terminate()  # SIGTERM: a run in progress saves a checkpoint and stops (resumable)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return ran


_SWEEP_PID: int | None = None  # in a worker process: the sweep that started it
_STOPPING = False  # in a worker process: a run was interrupted, so queued runs are not started


def _init_worker(threads: int, sweep_pid: int) -> None:
    import signal

    import torch

    global _SWEEP_PID
    _SWEEP_PID = sweep_pid
    torch.set_num_threads(threads)
    try:  # Linux: if the sweep dies (even by SIGKILL) its workers get SIGTERM, which train turns
        # into "save a checkpoint and stop"; run_trial then exits the orphan (see _exit_if_orphaned)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_if_orphaned() -> None:
    """A worker whose sweep died must not wait for tasks forever (its queue never closes: every
    worker holds both ends), nor train more: the rerun of the sweep will pick its run up."""
    if _SWEEP_PID is not None and os.getppid() != _SWEEP_PID:
        os._exit(0)


def run_trial(task: dict) -> dict:
    """Train one run of a sweep; the worker-process entry point (a plain, picklable function).

    Args:
        task: ``{"spec": spec file, "run_dir": run folder, "resume": continue it, "device": ...}``.

    Returns:
        ``{"report": TrainResult.to_json(), "seconds": wall time}``, ``{"status": "interrupted"}``,
        or ``{"status": "error", "error": message, "seconds": ...}`` for a run that could not
        train; the sweep goes on with the other runs either way.
    """
    from nncli.train import run_training

    global _STOPPING
    started = time.perf_counter()
    _exit_if_orphaned()
    if _STOPPING:  # tasks already queued to this worker when the sweep was interrupted
        return {"status": "interrupted"}
    try:
        if task["resume"]:
            result = run_training(None, None, None, device=task["device"], resume=task["run_dir"])
        else:
            result = run_training(task["spec"], None, task["run_dir"], device=task["device"])
    except NncliError as err:
        return {"status": "error", "error": str(err), "seconds": time.perf_counter() - started}
    except Exception as exc:  # a bug or a library failure in one trial must not end the sweep
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - started}
    finally:
        _exit_if_orphaned()
    if result.status == "interrupted":
        _STOPPING = True
        return {"status": "interrupted"}
    return {"report": result.to_json(), "seconds": time.perf_counter() - started}


# -- ranking and the winner ----------------------------------------------------------------------
def _summarise(plan: SweepPlan, out: Path, trials: list[TrialResult], ran: int, dry_run: bool) -> SweepResult:
    records = [r for t in trials for r in t.runs]
    metric = plan.metric or ("accuracy" if any("accuracy" in r.val for r in records if r.status == "ok")
                             else "loss")
    goal = plan.goal or METRICS.get(metric, "max")
    for trial in trials:
        ok = [r for r in trial.runs if r.status == "ok"]
        failed = [r for r in trial.runs if r.status == "failed"]
        if trial.status != "failed":
            trial.status = ("pending" if dry_run and len(ok) < len(trial.runs) else
                            "ok" if len(ok) == len(trial.runs) else "partial" if ok else
                            "failed" if failed else "pending")
        keys = sorted({k for r in ok for k in r.val}, key=["loss", "accuracy", "error"].index)
        for k in keys:
            values = [r.val[k] for r in ok if k in r.val]
            trial.val[k] = statistics.fmean(values)
            trial.val_std[k] = statistics.stdev(values) if len(values) > 1 else 0.0
        times = [r.seconds for r in trial.runs if r.seconds is not None]
        trial.seconds = sum(times) if times else None
        if failed and trial.error is None:
            trial.error = failed[0].error + (f" (seed {failed[0].seed})" if failed[0].seed is not None else "")

    # Ties on the metric (accuracy on a small validation split ties often) go to the lower
    # validation loss (the higher accuracy when ranking by loss), then to the smaller model,
    # then to the plan's order (sorted() is stable).
    second = "accuracy" if metric == "loss" else "loss"

    def key(t: TrialResult):
        value = t.val[metric]
        other = t.val.get(second)
        other = (-other if second == "accuracy" else other) if _finite(other) else math.inf
        return (-value if goal == "max" else value, other, t.params if t.params is not None else math.inf)

    rankable = [t for t in trials if t.status == "ok" and metric in t.val and _finite(t.val[metric])]
    ranked = sorted(rankable, key=key)
    for i, t in enumerate(ranked, 1):
        t.rank = i
    rest = [t for t in trials if t.rank is None]
    best = None
    if ranked:
        w = ranked[0]
        ok = [r for r in w.runs if r.status == "ok"]
        pick = (max if goal == "max" else min)(ok, key=lambda r: r.val.get(metric, math.nan))
        test_keys = sorted({k for r in ok for k in r.test}, key=["loss", "accuracy", "error"].index)
        test = {k: statistics.fmean([r.test[k] for r in ok if k in r.test]) for k in test_keys}
        test_std = {k: (statistics.stdev([r.test[k] for r in ok if k in r.test])
                        if sum(k in r.test for r in ok) > 1 else 0.0) for k in test_keys}
        best = {"id": w.id, "overrides": w.overrides, "spec_path": str(out / BEST_SPEC), "run_dir": pick.run_dir,
                "val": dict(w.val), "val_std": dict(w.val_std), "test": test, "test_std": test_std,
                "seeds": len(ok), "params": w.params, "flops": w.flops}
    return SweepResult(
        name=plan.name, out_dir=str(out), metric=metric, goal=goal, axes=[a.name for a in plan.axes],
        seeds=list(plan.seeds) if plan.seeds else None, trials=ranked + rest,
        search="random" if plan.random_mode else "grid", best=best, ran=ran,
        cached=sum(r.cached for r in records), failed=sum(r.status == "failed" for r in records),
        dry_run=dry_run)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _write_best(plan: SweepPlan, out: Path, result: SweepResult, configs: list[Config]) -> None:
    """``<out>/best.yaml``: the winning configuration as a spec a user can train or build on."""
    best = result.best
    config = next(c for c in configs if c.id == best["id"])
    seed = plan.seeds[0] if plan.seeds else None
    spread = (f" +- {best['val_std'][result.metric]:.4g} over {best['seeds']} seeds"
              if best["seeds"] > 1 else "")
    test = ", ".join(f"{k} {v:.4g}" for k, v in best["test"].items() if k != "error")
    header = (f"Winner of nncli sweep {plan.name} ({len(result.trials)} configurations), chosen on "
              f"validation {result.metric}: {best['val'][result.metric]:.4g}{spread}.\n"
              f"overrides: {json.dumps(best['overrides'], default=str)}\n"
              f"test (reported for the winner only): {test or '-'}")
    write_atomic(out / BEST_SPEC, spec_text(trial_spec_data(config, seed), header), durable=True)


# -- helpers for reports -------------------------------------------------------------------------
