"""Reading a sweep file: :func:`load_sweep` -> a validated :class:`~nncli.sweep.plan.SweepPlan`.

Every mistake is exit 2 with its place in the sweep file (or in the base spec, for the base's own
errors), and every path is tried on the base spec before anything trains. Pure Python.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from nncli.errors import InputError, SpecError, did_you_mean
from nncli.seeds import MAX_SEEDS, SEED_MAX
from nncli.spec.overrides import parse_path
from nncli.spec.parse import describe_found
from nncli.spec.source import Document, Where, parse_yaml, read_text
from nncli.sweep.axes import _check_overlaps, read_axes
from nncli.sweep.options import METRICS
from nncli.sweep.plan import SWEEP_KEYS, Axis, SweepPlan, Target, _base_sources, _grid_size, _slug, _unique
from nncli.sweep.search import read_search


def load_sweep(
    path: str | Path,
    *,
    trials: int | None = None,
    search_seed: int | None = None,
    extra_set: dict[str, Any] | None = None,
    metric: str | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    allow_custom: bool = True,
) -> SweepPlan:
    """Read and validate a sweep file.

    Args:
        path: the sweep YAML file (see :mod:`nncli.sweep` for its format).
        trials: ``--trials N``: random search with N configurations (overrides the file's `trials`).
        search_seed: ``--seed``: the random search's seed (overrides `search_seed`, default 0).
        extra_set: ``--set PATH=VALUE`` overrides applied to every trial, after the file's `set:`.
        metric: ``--metric``: the validation metric to rank by.
        sampler, pruner: ``--sampler`` / ``--pruner``: Optuna's search (over the file's `search:`).
        allow_custom: False refuses Custom layers in the base spec and in every trial's spec.

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
            err.hint = (
                'quote spec paths inside a [...] list: ["layers[0].Linear.out_features", ...], '
                "or write the list one item per line (`- layers[0].Linear.out_features`)"
            )
        raise
    parser = _SweepParser(doc, path.resolve().parent, path)
    parser.allow_custom = allow_custom
    plan = parser.plan(trials, search_seed, extra_set or {}, metric)
    plan.allow_custom = allow_custom
    plan.search = read_search(
        doc,
        doc.data.get("search") if isinstance(doc.data, dict) else None,
        sampler,
        pruner,
        search_seed,
        plan.axes,
        grid_plan=not plan.random_mode,
    )
    _check_paths(plan)
    return plan


class _SweepParser:
    """The top level of a sweep file: its keys, base spec(s) and run settings, in reading order."""

    allow_custom = True  # False: a base spec with a Custom layer is refused (--no-custom)

    def __init__(self, doc: Document, base_dir: Path, file: Path | None) -> None:
        self.doc = doc
        self.data = doc.data
        self.base_dir = base_dir
        self.file = file

    def fail(self, path: tuple, message: str, hint: str | None = None, *, key: bool = False) -> SpecError:
        return self.doc.where(path, key=key).error(message, hint)

    def plan(self, trials, search_seed, extra_set, metric) -> SweepPlan:
        data = self.data
        self._check_keys()
        name = data.get("name") or (self.file.stem if self.file else "sweep")
        if not isinstance(name, str):
            raise self.fail(("name",), f"expected a string, found {describe_found(name)}")
        base, base_file, spec_files, axes = self.sources()
        self._add_axes(axes)
        _check_overlaps(axes)
        fixed, fixed_where = self.fixed(extra_set)
        seeds = self.seeds()
        n_trials, random_mode, s_seed = self.search(axes, trials, search_seed)
        metric = self.metric(metric)
        goal = data.get("goal")
        if goal is not None and goal not in ("max", "min"):
            raise self.fail(("goal",), f"expected `max` or `min`, found {describe_found(goal)}")
        return SweepPlan(
            name=name,
            file=self.file,
            base=base,
            base_file=base_file,
            spec_files=spec_files,
            axes=axes,
            fixed=fixed,
            fixed_where=fixed_where,
            seeds=seeds,
            trials=n_trials,
            search_seed=s_seed,
            random_mode=random_mode,
            metric=metric,
            goal=goal,
        )

    def _check_keys(self) -> None:
        """Refuse a sweep file that is not a mapping, has an unknown key, or not exactly one spec source."""
        data = self.data
        if not isinstance(data, dict):
            raise SpecError(
                f"expected a sweep file: a mapping with `base` (or `spec`/`specs`) and `grid` "
                f"or `random`, found {describe_found(data)}",
                file=self.doc.file,
                line=1,
                hint="e.g.\nbase: specs/moons-mlp.yaml\ngrid:\n  train.lr: [0.001, 0.01]",
            )
        for key in data:
            if key not in SWEEP_KEYS:
                raise self.fail(
                    (key,),
                    f"unknown key {key!r} in the sweep file",
                    did_you_mean(str(key), SWEEP_KEYS) or "allowed: " + ", ".join(SWEEP_KEYS),
                    key=True,
                )
        sources = [k for k in ("base", "spec", "specs") if k in data]
        if len(sources) != 1:
            raise self.fail(
                (sources[1],) if len(sources) > 1 else (),
                "expected exactly one of `base` (a spec file), `spec` (an inline spec) or "
                f"`specs` (a list of spec files), found {', '.join(sources) or 'none'}",
                key=bool(sources),
            )

    def _add_axes(self, axes: list[Axis]) -> None:
        """Append the `grid:` and `random:` axes to ``axes``; refuse none at all, or a name given twice."""
        for section in ("grid", "random"):
            if section in self.data:
                axes.extend(read_axes(self.doc, self.data[section], section))
        if not axes:
            raise self.fail(
                (),
                "nothing to sweep: expected a `grid:` or `random:` section (or `specs:`)",
                "e.g.\ngrid:\n  train.lr: [0.001, 0.01]\n  replace:ReLU: [ReLU, Tanh]",
            )
        names = [a.name for a in axes]
        for a in axes:
            if names.count(a.name) > 1:
                raise a.where.error(f"axis {a.name!r} is given twice (in `grid` and `random`)")

    def sources(self) -> tuple[dict | None, Path | None, dict[str, Path], list[Axis]]:
        """`base` (a file), `spec` (inline) or `specs` (files: an axis of their own)."""
        data = self.data
        base = base_file = None
        spec_files: dict[str, Path] = {}
        axes: list[Axis] = []
        if "base" in data:
            base_file, base = self.spec_file(data["base"], ("base",))
        elif "spec" in data:
            if not isinstance(data["spec"], dict):
                raise self.fail(
                    ("spec",),
                    f"expected an inline spec (a mapping with `input` and `layers`), "
                    f"found {describe_found(data['spec'])}",
                )
            base = data["spec"]
            self.check_inline(base)
        else:
            files = data["specs"]
            if not isinstance(files, list) or not files:
                raise self.fail(("specs",), f"expected a list of spec files, found {describe_found(files)}")
            for i, item in enumerate(files):
                f, _ = self.spec_file(item, ("specs", i))
                label = _unique(_slug(f.stem), spec_files)
                spec_files[label] = f
            axes.append(
                Axis("spec", (Target(spec_file=True),), tuple(spec_files), where=self.doc.where(("specs",), key=True))
            )
        return base, base_file, spec_files, axes

    def fixed(self, extra_set: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Where]]:
        """`set:` in the file, then ``--set``: path -> value, and where each was written."""
        fixed, fixed_where = {}, {}
        if "set" in self.data:
            if not isinstance(self.data["set"], dict):
                raise self.fail(
                    ("set",),
                    f"expected a mapping of spec path to value, found {describe_found(self.data['set'])}",
                    "e.g. set: {train.epochs: 10, data.n: 500}",
                )
            for k, v in self.data["set"].items():
                fixed[k], fixed_where[k] = v, self.doc.where(("set", k), key=True)
        for k, v in extra_set.items():
            fixed[k], fixed_where[k] = v, Where(None, None, None, f"--set {k}")
        return fixed, fixed_where

    def seeds(self) -> tuple[int, ...] | None:
        seeds = self.data.get("seeds")
        if seeds is None:
            return None
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds > MAX_SEEDS:
                raise self.fail(("seeds",), f"expected at most {MAX_SEEDS:,} seeds, found {describe_found(seeds)}")
            seeds = list(range(seeds)) if seeds > 0 else seeds  # `seeds: 3` = [0, 1, 2]
        if (
            not isinstance(seeds, list)
            or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX for s in seeds)
        ):
            raise self.fail(
                ("seeds",),
                f"expected a list of seeds (integers from 0 to {SEED_MAX:,}) or a count, found {describe_found(seeds)}",
            )
        if len(set(seeds)) != len(seeds):
            raise self.fail(("seeds",), f"expected distinct seeds, found {seeds}")
        return tuple(seeds)

    def search(self, axes: list[Axis], trials: int | None, search_seed: int | None) -> tuple[int | None, bool, int]:
        """(number of trials, random search?, search seed) from the file and ``--trials``/``--seed``."""
        data = self.data
        n_trials = trials if trials is not None else data.get("trials")
        if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
            where = ("trials",) if trials is None else ()
            raise (
                self.fail(where, f"expected `trials` to be an integer >= 1, found {describe_found(n_trials)}")
                if trials is None
                else InputError(f"expected an integer >= 1, found {n_trials}", param="trials")
            )
        # a `random:` section, `trials:` in the file or --trials: sample instead of the full grid
        random_mode = "random" in data or n_trials is not None
        if random_mode and n_trials is None:
            if any(not a.discrete for a in axes):
                raise self.fail(
                    ("random",),
                    "random search needs a number of trials: `trials: N` in the sweep file, or the trials option",
                    key=True,
                )
        if "random" in data and n_trials is None:
            n_trials = _grid_size(axes)
        s_seed = search_seed if search_seed is not None else data.get("search_seed", 0)
        if isinstance(s_seed, bool) or not isinstance(s_seed, int):
            raise self.fail(("search_seed",), f"expected an integer, found {describe_found(s_seed)}")
        return n_trials, random_mode, s_seed

    def metric(self, metric: str | None) -> str | None:
        """``--metric``, else the file's; ``val.`` prefixes dropped (sweeps rank on validation)."""
        data = self.data
        metric = metric if metric is not None else data.get("metric")
        if metric is not None and (not isinstance(metric, str) or not metric.strip()):
            raise self.fail(("metric",), f"expected a metric name (accuracy, loss), found {describe_found(metric)}")
        if metric is not None:
            metric = metric.strip()
            if metric.startswith("val."):
                metric = metric[4:]  # `val.accuracy` reads as the same thing: sweeps rank on validation
        if metric is not None and metric not in METRICS:
            hint = did_you_mean(metric, METRICS) or "choices: " + ", ".join(METRICS)
            if "metric" in data and metric == str(data["metric"]).strip().removeprefix("val."):
                raise self.fail(("metric",), f"unknown metric {metric!r}", hint)
            raise InputError(f"unknown metric {metric!r}", hint=hint, param="metric")
        return metric

    def spec_file(self, value: Any, path: tuple) -> tuple[Path, dict]:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected the path of a spec file, found {describe_found(value)}")
        f = Path(value).expanduser()
        if not f.is_absolute():
            f = self.base_dir / f
        if not f.is_file():
            raise self.doc.where(path).error(
                f"no such spec file: {f}",
                "paths in a sweep file are relative to the sweep file's folder",
                kind=InputError,
            )
        from nncli.spec import load_spec

        load_spec(f, allow_custom=self.allow_custom)  # validate the base now: its own errors point into its own file
        return f, parse_yaml(read_text(f), str(f)).data

    def check_inline(self, base: dict) -> None:
        """Validate an inline spec now, with its errors located in the sweep file."""
        from nncli.spec import parse_spec

        try:
            parse_spec(
                yaml.safe_dump(base, sort_keys=False),
                file=str(self.file),
                base_dir=self.base_dir,
                allow_custom=self.allow_custom,
            )
        except SpecError as err:
            try:
                inner = parse_path(err.spec_path) if err.spec_path else ()
            except SpecError:
                inner = ()
            where = self.doc.where(("spec",) + inner)
            raise SpecError(
                err.message,
                file=where.file,
                line=where.line,
                column=where.column,
                spec_path=where.spec_path,
                hint=err.hint,
            ) from None


def _check_paths(plan: SweepPlan) -> None:
    """Every path is checked against the spec now, before anything trains: a typo is exit 2 at once."""
    for source, spec_data in _base_sources(plan):
        for k, v in plan.fixed.items():
            target = Target(path=parse_path(k, plan.fixed_where[k]))
            target.apply(spec_data, v, plan.fixed_where[k], source)
        for a in plan.axes:
            for t in a.targets:
                if not t.spec_file:
                    probe = a.values[0] if a.values else (a.low if a.dist != "int" else int(a.low))
                    t.apply(copy.deepcopy(spec_data), probe, a.where, source)
