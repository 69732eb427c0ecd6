"""Custom layers as a trust decision: where a file target may live, and ``--no-custom``.

A ``Custom`` layer imports Python code, and importing runs the module's top-level code: checking
an untrusted spec with Custom layers runs its author's code. So (1) a file target must resolve
inside the spec's own folder tree (no absolute path, no ``..`` out of it, no symlink out of it),
and (2) ``allow_custom=False`` (the CLI's ``--no-custom``) or ``NNCLI_NO_CUSTOM=1`` refuses every
Custom layer before anything is imported, for CI jobs that check contributors' specs. The loaders
take ``allow_custom`` as a parameter; the builder checks the environment once more before an
import. Pure Python: no torch here.
"""

from __future__ import annotations

import os
from pathlib import Path

from nncli.errors import SpecError

NO_CUSTOM_ENV = "NNCLI_NO_CUSTOM"


def custom_refused(allow_custom: bool = True) -> bool:
    """True when Custom layers must not be imported: ``allow_custom`` is False or ``NNCLI_NO_CUSTOM`` is set."""
    return not allow_custom or os.environ.get(NO_CUSTOM_ENV, "").strip().lower() not in ("", "0", "false", "no")


def refuse_custom_layers(spec, *, allow_custom: bool = True) -> None:
    """Raise for the first Custom layer of ``spec`` when Custom code is refused; nothing is imported.

    Raises:
        SpecError: exit 2, located at the Custom layer.
    """
    if not custom_refused(allow_custom):
        return
    for layer in spec.walk():
        if layer.type == "Custom":
            target = getattr(layer, "target", "")
            raise layer.where.error(
                f"Custom layer {target!r} refused: --no-custom (or {NO_CUSTOM_ENV}) forbids running "
                "a spec's Python code",
                "a Custom layer imports and runs Python code; drop --no-custom only for specs you trust",
            )


def resolve_file_target(base_dir: Path | None, relative: str, where) -> Path:
    """The file of a ``file.py:Class`` target, which must lie inside ``base_dir``'s tree.

    Args:
        base_dir: the spec's folder (the current folder for a spec given as text).
        relative: the target's file part as written.
        where: the target's :class:`~nncli.spec.source.Where`, for the error.

    Raises:
        SpecError: an absolute path, or one that leaves the spec's folder (``..``, a symlink).
    """
    base = (base_dir or Path.cwd()).resolve()
    hint = (
        "a Custom file target is relative to the spec's folder and must stay inside it; "
        'copy the file beside the spec, or install it as a package and write "package.module:Class"'
    )
    if Path(relative).is_absolute() or relative.startswith("~"):
        raise where.error(f"Custom target file {relative!r} is an absolute path", hint, kind=SpecError)
    file = (base / relative).resolve()
    if file != base and base not in file.parents:
        raise where.error(f"Custom target file {relative!r} is outside the spec's folder {base}", hint, kind=SpecError)
    return file
