"""Names and modules loaded on first use, so that start-up (``nncli --help``) stays torch-free.

A package lists what it exports and where each name is defined; the defining module is imported
the first time the name is read. The command line holds the renderer the same way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """A module-level ``__getattr__`` and ``__dir__`` for ``package`` that load ``exports`` lazily.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> the module that defines it.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"run_sweep": "nncli.sweep.run"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # found directly next time
        return value

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


class LazyModule:
    """A module imported on first attribute access: ``--help`` must not pay for rich's tables."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)
