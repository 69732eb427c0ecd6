"""The spec file each trial trains: a configuration's data with its seed set and a relative
``data.path`` made absolute (the file lives in the sweep folder, not next to the base spec),
written as YAML in the spec contract's key order. Pure Python.

A Custom file target stays as written: the trust rule refuses absolute targets, so a trial's spec
is parsed with the base spec's folder as the one its Custom files resolve against (the run
records that folder in ``run.yaml``, so evaluate and resume find them again).
"""

from __future__ import annotations

import copy

import yaml

from nncli.spec.overrides import make_data_path_absolute
from nncli.spec.parse import TOP_LEVEL_KEYS
from nncli.sweep.expansion import Config


def trial_spec_data(config: Config, seed: int | None) -> dict:
    """The spec a trial trains: the config's data with ``train.seed`` set and a relative data path
    made absolute (the trial's spec file lives in the sweep folder, not next to the base spec)."""
    data = copy.deepcopy(config.spec_data)
    if seed is not None:
        train = data.get("train")
        if not isinstance(train, dict):
            train = data["train"] = {}
        train["seed"] = seed
    make_data_path_absolute(data, config.base_dir)
    return data


def spec_text(data: dict, header: str | None = None) -> str:
    """A spec's data as YAML in the spec contract's key order, optionally under a comment header."""
    order = {k: i for i, k in enumerate(TOP_LEVEL_KEYS)}
    ordered = dict(sorted(data.items(), key=lambda kv: order.get(kv[0], len(order))))
    body = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=100)
    if header:
        body = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
    return body
