"""What one invocation of nncli was asked beyond its command's own flags: :class:`Options`.

Built once per call of :func:`nncli.cli.main.main` (from the words and the environment), handed to
click as the context's ``obj`` and completed by the root callback (``--traceback``,
``--no-custom``). Commands read it with :func:`options_of` and pass what the library needs as
parameters (``allow_custom=``, ``threads=``); nothing here outlives the invocation, so a program
that calls ``main`` many times starts each call clean.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

TRACEBACK_ENV = "NNCLI_TRACEBACK"


def _env_on(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "") not in ("", "0")


@dataclass(frozen=True)
class Options:
    """The global flags of one invocation.

    ``applied_sets`` is filled while the command runs: ``(field path, "KEY=VALUE", spec file)``
    for each spec field a ``--set`` wrote, so that an error raised later at that field (by the
    builder, by torch's own argument checks) can say which ``--set`` wrote it.
    """

    traceback: bool = False
    json: bool = False
    no_custom: bool = False
    applied_sets: list = field(default_factory=list, compare=False)

    @property
    def allow_custom(self) -> bool:
        return not self.no_custom

    @classmethod
    def from_argv(cls, args: Sequence[str], environ: Mapping[str, str] | None = None) -> Options:
        """What can be known before click parses the words: a usage error must already know
        whether to print JSON (``--json`` before any ``--``) and whether to show a traceback."""
        environ = os.environ if environ is None else environ
        words = list(args[: list(args).index("--")]) if "--" in args else list(args)
        return cls(traceback="--traceback" in args or _env_on(environ, TRACEBACK_ENV), json="--json" in words)

    def with_root_flags(self, *, traceback: bool, no_custom: bool) -> Options:
        return replace(self, traceback=self.traceback or traceback, no_custom=self.no_custom or no_custom)


def options_of(ctx) -> Options:
    """The :class:`Options` of the invocation a click context belongs to (defaults outside ``main``)."""
    obj = ctx.find_object(Options) if ctx is not None else None
    return obj if obj is not None else Options.from_argv([])
