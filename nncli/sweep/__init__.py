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
and retrains only those whose spec changed. Test metrics are reported for the winner only: choosing
on validation and reporting test keeps the test set honest.

The package, one module per concern:

- ``options``: the metrics a sweep ranks on (the command line's ``--metric`` choices);
- ``plan``: a parsed sweep file (Target, Axis, SweepPlan); ``parse``: :func:`load_sweep`, its
  top level; ``axes``: its ``grid:`` / ``random:`` sections;
- ``expansion``: the plan's configurations; ``trial_specs``: the spec file each trial trains;
- ``run``: :func:`run_sweep`; ``execute``: :func:`run_trial`, what every backend trains;
  ``backends``: where runs train (``local``: this process or a pool of processes; ``ray``: Ray
  Tune trials); ``search``: Optuna's samplers and pruners (``search:``); ``extras``: the optional
  extras they need; ``resume``: what an earlier invocation left in a trial's folder;
- ``results``: the result records (``sweep.json``); ``ranking``: the ranking and ``best.yaml``.

Spec paths and ``replace:`` overrides (:func:`apply_override`, :func:`parse_path`) live in
:mod:`nncli.spec.overrides` and are re-exported here. The plan side is pure Python; torch is
imported only when trials are counted and trained. The names below are imported on first use,
so that ``import nncli.sweep.options`` (the command line, at start-up) loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nncli.lazy import lazy_exports

# exported name -> the module that defines it
_EXPORTS = {
    "METRICS": "nncli.sweep.options",
    "DISTRIBUTIONS": "nncli.sweep.plan",
    "SWEEP_KEYS": "nncli.sweep.plan",
    "Axis": "nncli.sweep.plan",
    "SweepPlan": "nncli.sweep.plan",
    "Target": "nncli.sweep.plan",
    "load_sweep": "nncli.sweep.parse",
    "apply_override": "nncli.spec.overrides",
    "parse_path": "nncli.spec.overrides",
    "Config": "nncli.sweep.expansion",
    "expand": "nncli.sweep.expansion",
    "spec_text": "nncli.sweep.trial_specs",
    "trial_spec_data": "nncli.sweep.trial_specs",
    "BEST_SPEC": "nncli.sweep.results",
    "FINISHED": "nncli.sweep.results",
    "RESULT_FILE": "nncli.sweep.results",
    "TRIAL_FILE": "nncli.sweep.results",
    "RunRecord": "nncli.sweep.results",
    "SweepEvent": "nncli.sweep.results",
    "SweepResult": "nncli.sweep.results",
    "TrialResult": "nncli.sweep.results",
    "run_sweep": "nncli.sweep.run",
    "run_trial": "nncli.sweep.execute",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from nncli.spec.overrides import apply_override, parse_path
    from nncli.sweep.execute import run_trial
    from nncli.sweep.expansion import Config, expand
    from nncli.sweep.options import METRICS
    from nncli.sweep.parse import load_sweep
    from nncli.sweep.plan import DISTRIBUTIONS, SWEEP_KEYS, Axis, SweepPlan, Target
    from nncli.sweep.results import (
        BEST_SPEC,
        FINISHED,
        RESULT_FILE,
        TRIAL_FILE,
        RunRecord,
        SweepEvent,
        SweepResult,
        TrialResult,
    )
    from nncli.sweep.run import run_sweep
    from nncli.sweep.trial_specs import spec_text, trial_spec_data

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
