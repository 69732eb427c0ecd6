"""Replacing the run in a folder without losing it to a mistyped option (``nncli train --force``).

The old folder is moved aside (a hidden sibling) before training and deleted once the new run
returns; when the new run is refused before it starts (bad spec, option or data: exit 2) the old
run is moved back untouched. Only a run folder (it has ``run.yaml``) or an empty folder is
replaced: a folder of other files is refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nncli.errors import InputError, NncliError
from nncli.runs import RUN_FILE

# how errors name the two parameters; the CLI passes its flags ({"out": "--out", "force": "--force"})
PARAMETER_NAMES = {"out": "out_dir", "force": "force"}


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _check_replaceable(out: Path, keep: tuple, names: dict) -> None:
    out_name, force_name = names["out"], names["force"]
    if not out.is_dir():
        raise InputError(
            f"{out_name} {out}: expected a run folder, found a file", hint=f"{force_name} replaces run folders only"
        )
    if any(out.iterdir()) and not (out / RUN_FILE).is_file():
        raise InputError(
            f"{out_name} {out}: {force_name} replaces a run folder (with run.yaml), found other files",
            hint=f"pick a new {out_name}, or delete the folder yourself",
        )
    for f in keep:
        if f is not None and _inside(Path(f), out):
            raise InputError(
                f"{force_name} {out_name} {out}: {f} is inside the folder that would be replaced",
                hint="copy the spec out of the run folder first",
            )


@contextmanager
def replaced_run_folder(
    out: Path | None, force: bool, keep: tuple = (), names: dict = PARAMETER_NAMES
) -> Iterator[None]:
    """Inside the block ``out`` is absent (its old run moved aside when ``force``).

    Args:
        out: the run folder; None or a missing folder: nothing to do.
        force: replace the run in it.
        keep: files the caller reads (the spec): refused when inside ``out``.
        names: how error messages name ``out`` and ``force`` (:data:`PARAMETER_NAMES`).

    Raises:
        InputError: ``out`` is not a run folder, or holds a file the caller needs.
    """
    if not force or out is None or not out.exists():
        yield
        return
    _check_replaceable(out, keep, names)
    aside = out.parent / f".{out.name}.replaced-{os.getpid()}"
    out.rename(aside)
    started = False
    try:
        yield
        started = True
    except NncliError:
        if not out.exists():  # refused before the new run made its folder: the old run comes back
            aside.rename(out)
            raise
        started = True
        raise
    except BaseException:
        started = out.exists()
        if not started:
            aside.rename(out)
        raise
    finally:
        if started and aside.exists():
            shutil.rmtree(aside, ignore_errors=True)
