"""Options shared by the commands that load a spec or compute: ``--set PATH=VALUE`` and ``--threads N``.

``--set`` uses the sweep's path syntax and override code (:mod:`nncli.spec.overrides`): the value
is read as YAML (``--set data.noise=0.3`` is a float, ``--set train.amp=bf16`` a string,
``--set 'layers[0].Linear.out_features=[32]'`` a list), written into the spec's YAML data before
validation, and an error in the result is located in the spec file with the ``--set`` named.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from nncli.errors import InputError

SET_HELP = (
    "Override a spec field before validation: PATH=VALUE, the sweep's paths "
    "(train.lr=0.01, data.noise=0.3, layers[0].Linear.out_features=32, replace:ReLU=Tanh); "
    "VALUE is read as YAML. Repeatable."
)
THREADS_HELP = (
    "CPU threads for torch. Default: 1 for small models (a step under 1e8 multiply-adds), "
    "else the cores other work leaves free (see the docs, 'Command-line conventions': Threads)."
)


def set_option() -> Any:
    return typer.Option([], "--set", metavar="PATH=VALUE", help=SET_HELP)


def threads_option() -> Any:
    return typer.Option(None, "--threads", min=1, help=THREADS_HELP)


def parse_sets(items: list[str]) -> dict:
    """``["train.epochs=3"]`` -> ``{"train.epochs": 3}`` (each value read as YAML).

    Raises:
        InputError: an item without ``=`` or a value that is not YAML (exit 2).
    """
    from nncli.errors import SpecError
    from nncli.spec.source import parse_yaml

    out = {}
    for item in items:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise InputError(f"--set {item!r}: expected PATH=VALUE, e.g. --set train.epochs=5")
        try:
            # the spec's own reader: its bounds (aliases, recursion, digits, tags) hold for --set too
            out[path.strip()] = parse_yaml(text).data if text.strip() else None
        except SpecError as err:
            shown = item if len(item) <= 80 else item[:77] + "..."
            raise InputError(
                f"--set {shown!r}: the value is not valid YAML ({err.message})",
                hint="quote a string with spaces or colons: --set 'data.name=\"a b\"'",
            ) from None
    return out


def name_the_set(err, applied: list) -> None:
    """Add "(set by --set PATH=VALUE)" to an error at a field a ``--set`` of this invocation wrote.

    ``applied``: ``(field path, "PATH=VALUE", spec file)`` records, what
    :func:`nncli.spec.load_spec` wrote into ``Options.applied_sets``. A value the spec parser
    accepts can still be refused later (the builder: ``out_features: -3``, torch's own argument
    checks); that error is located at the field in the file, and this says which ``--set`` wrote it.
    """
    if not applied or not getattr(err, "spec_path", None) or "(set by --set " in err.message:
        return
    from nncli.errors import SpecError
    from nncli.spec.overrides import parse_path

    try:
        field = parse_path(err.spec_path)
    except SpecError:
        return
    for path, text, file in applied:
        if err.file is not None and str(err.file) != file:
            continue  # an error in another file (a transfer's source run) with a similar path
        # the field the --set wrote, something inside it, or the layer/section holding it
        if field[: len(path)] == path or path[: len(field)] == field:
            err.message += f" (set by --set {text})"
            return


def load_spec_with_sets(ctx, path: Path, items: list[str] | None = None, *, detach: bool = False):
    """The spec at ``path`` as this invocation asks: its ``--set`` items applied, Custom layers
    refused under ``--no-custom`` (:func:`nncli.spec.load_spec` does the work).

    ``detach`` (with items): the spec forgets its file, so a run folder stores the overridden
    spec; relative data and Custom file paths are made absolute first.

    Raises:
        SpecError / InputError: a bad item, a path that is not in the spec (with a did-you-mean,
            located at the ``--set``), or a value the spec refuses (located at that field in the
            file, naming the ``--set`` that wrote it).
    """
    from nncli.cli.options import options_of
    from nncli.errors import NncliError
    from nncli.spec import load_spec

    opts = options_of(ctx)
    overrides = parse_sets(items) if items else None
    try:
        return load_spec(
            path, overrides, allow_custom=opts.allow_custom, detach=detach, origin="--set", applied=opts.applied_sets
        )
    except NncliError as err:
        name_the_set(err, opts.applied_sets)
        raise


def threads_for_spec(
    spec, batch_size: int, device: str = "auto", *, threads: int | None = None, backward: bool = True
) -> None:
    """Set torch's threads for ``spec`` at ``batch_size`` on ``device`` (``threads``: --threads, wins)."""
    from nncli.cli.app import render
    from nncli.device import resolve_device
    from nncli.threads import for_spec

    choice = for_spec(spec, batch_size, threads=threads, device=resolve_device(device), backward=backward)
    if choice.note:
        render.stderr_console().print(f"note: {render.escape(choice.note)}")


def threads_for_run(run_dir: Path, device: str = "auto", batch_size: int = 256, *, threads: int | None = None) -> None:
    """Threads for inference with a run folder's spec; a folder that is not a run is left to the
    command, which says what is wrong with it."""
    from nncli.errors import NncliError
    from nncli.runs import SPEC_FILE
    from nncli.spec import load_spec

    try:
        spec = load_spec(Path(run_dir) / SPEC_FILE)
    except NncliError:
        return
    threads_for_spec(spec, batch_size, device, threads=threads, backward=False)


@contextmanager
def threads_for_workers(threads: int | None):
    """``--threads`` in the environment for the block: spawned sweep workers inherit it."""
    import os

    from nncli.threads import ENV_THREADS

    old = os.environ.get(ENV_THREADS)
    if threads is not None:
        os.environ[ENV_THREADS] = str(threads)
    try:
        yield
    finally:
        if threads is not None:
            if old is None:
                os.environ.pop(ENV_THREADS, None)
            else:
                os.environ[ENV_THREADS] = old


def complete_spec(incomplete: str) -> list[str]:
    """Shell completion for a SPEC or SWEEP argument: .yaml/.yml files and folders."""
    return _complete_paths(incomplete, lambda p: p.suffix.lower() in (".yaml", ".yml"))


def complete_run(incomplete: str) -> list[str]:
    """Shell completion for a RUN argument: folders (run folders first)."""
    return _complete_paths(incomplete, lambda p: False)


def _complete_paths(incomplete: str, wanted) -> list[str]:
    head, sep, stem = incomplete.rpartition("/")
    prefix = head + sep
    try:
        entries = sorted((Path(prefix).expanduser() if prefix else Path(".")).iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        if not p.name.startswith(stem) or (p.name.startswith(".") and not stem.startswith(".")):
            continue
        if p.is_dir():
            out.append(prefix + p.name + "/")
        elif wanted(p):
            out.append(prefix + p.name)
    return out
