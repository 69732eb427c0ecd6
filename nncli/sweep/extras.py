"""The optional extras a sweep can need, and the exit-2 message when one is missing.

``--backend ray`` needs Ray Tune (``nncli[ray]``); ``search: {sampler: ..., pruner: ...}`` needs
Optuna (``nncli[optuna]``). Neither is needed by the default sweep, so neither is a dependency.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nncli.errors import InputError

# extra -> (the module it provides, what needs it)
EXTRAS = {
    "ray": ("ray.tune", "the ray backend"),
    "optuna": ("optuna", "an Optuna sampler or pruner (search: {sampler: ...})"),
}


def require(extra: str) -> ModuleType:
    """Import the module of ``extra``, or raise an InputError (exit 2) naming the extra to install."""
    module, needed_by = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(
            f"{needed_by} needs the optional extra `nncli[{extra}]`, which is not installed "
            f"(import {module} failed: {exc})",
            hint=f"install it with: pip install 'nncli[{extra}]'",
        ) from None
