"""The spec file each trial trains: a configuration's data with its seed set and relative paths
made absolute (the file lives in the sweep folder, not next to the base spec), written as YAML in
the spec contract's key order; and its fingerprint. Pure Python.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from nncli.spec.overrides import BRANCH_LISTS, LAYER_LISTS
from nncli.spec.parse import TOP_LEVEL_KEYS
from nncli.sweep.expansion import Config


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
        for key in LAYER_LISTS:
            _absolute_custom(args.get(key), base_dir)
        for key in BRANCH_LISTS:  # Parallel's branches: a list of layer lists
            for branch in args.get(key) or []:
                _absolute_custom(branch, base_dir)


def spec_text(data: dict, header: str | None = None) -> str:
    """A spec's data as YAML in the spec contract's key order, optionally under a comment header."""
    order = {k: i for i, k in enumerate(TOP_LEVEL_KEYS)}
    ordered = dict(sorted(data.items(), key=lambda kv: order.get(kv[0], len(order))))
    body = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=100)
    if header:
        body = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
    return body
