"""Writing a diagram to a file: the format from ``--format`` or the extension, checks on the output
path, atomic writes, and graphviz's ``dot`` for svg/png/pdf (with the .dot source saved when
``dot`` is missing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import graphviz

from nncli.diagram.dot import DOT_SIGNATURE
from nncli.errors import InputError
from nncli.files import write_atomic

if TYPE_CHECKING:
    from nncli.diagram.model import Diagram
    from nncli.spec import Spec

FORMATS = ("svg", "png", "pdf", "dot")
_EXTENSIONS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

INSTALL_GRAPHVIZ = (
    "install graphviz, which provides `dot`: `sudo apt-get install graphviz` (Debian/Ubuntu), "
    "`brew install graphviz` (macOS) or `conda install -c conda-forge graphviz` (conda); then run "
    "this command again"
)


def resolve_format(output: Path, fmt: str | None) -> str:
    """The output format: ``fmt`` if given (it must agree with a known extension), else the extension's."""
    ext = output.suffix.lower()
    by_ext = _EXTENSIONS.get(ext)
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"expected one of {', '.join(FORMATS)}, found {fmt!r}", param="fmt")
        if by_ext is not None and by_ext != fmt:
            raise InputError(
                f"{fmt} but the output {output} ends in {ext} ({by_ext})",
                param="fmt",
                hint=f"name the file {output.with_suffix('.' + fmt)}, or give no format (the extension decides)",
            )
        return fmt
    if by_ext is None:
        raise InputError(
            f"cannot tell the format of {output} from its extension "
            f"({ext or 'none'}); expected .svg, .png, .pdf or .dot",
            hint="use one of those extensions or name the format: svg, png, pdf or dot",
        )
    return by_ext


def check_output(output: Path, spec: Spec | None = None) -> None:
    """Refuse an output path that is a folder, in a missing folder, or the spec file itself."""
    if output.is_dir():
        raise InputError(f"the output {output} is a folder; expected a file name such as {output / 'net.svg'}")
    parent = output.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {output}: the folder {parent} does not exist")
    if output.exists() and not output.is_file():
        raise InputError(f"cannot write {output}: it exists and is not a regular file")
    if (
        spec is not None
        and spec.path is not None
        and output.exists()
        and Path(spec.path).exists()
        and os.path.samefile(output, spec.path)
    ):
        raise InputError(
            f"refusing to overwrite the spec file {spec.path} with the diagram", hint="give another output path"
        )


# Most nodes a rendered (svg/png/pdf) diagram may have: graphviz's layout grows faster than
# linearly in time and memory, and far beyond this `dot` runs for minutes and can crash. DOT
# output has no bound (it is only text).
RENDER_NODE_LIMIT = 10_000


def write_diagram(diagram: Diagram, output: str | Path, fmt: str) -> int:
    """Write the diagram as ``fmt``; returns the bytes written.

    DOT needs only the ``graphviz`` Python package. svg/png/pdf run graphviz's ``dot``; where it
    is missing, the DOT source goes to ``output`` with a ``.dot`` extension (never over a file
    nncli did not write) and an :class:`InputError` says how to install graphviz.
    """
    output = Path(output)
    source = diagram.source
    if fmt == "dot":
        data = source.encode("utf-8")
        write_atomic(output, data)
        return len(data)
    if len(diagram.nodes) > RENDER_NODE_LIMIT:
        raise InputError(
            f"the diagram has {len(diagram.nodes):,} nodes; rendering {fmt} with graphviz's `dot` is "
            f"refused above {RENDER_NODE_LIMIT:,} (a 10,000-node chain takes ~20 s, 40,000 ran for "
            "minutes and crashed dot)",
            hint="draw it with fewer blocks expanded (a smaller depth, or none); or write the DOT source "
            "(an output ending in .dot) and render it yourself",
        )
    try:
        data = graphviz.pipe("dot", fmt, source.encode("utf-8"), quiet=True)  # its stderr goes into our error
    except graphviz.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise InputError(
            f"graphviz's `dot` failed rendering {fmt} (exit {exc.returncode})" + (f": {detail[-1]}" if detail else ""),
            hint="write the DOT source instead (-o net.dot) to see or render it",
        ) from None
    except graphviz.ExecutableNotFound:
        dot_path = output.with_suffix(".dot")
        if dot_path.exists() and not _is_ours(dot_path):
            raise InputError(
                f"rendering {fmt} needs graphviz's `dot` program, which is not on PATH; and "
                f"{dot_path} exists and was not written by nncli, so the DOT source was not saved",
                hint=INSTALL_GRAPHVIZ + "; or write the source elsewhere: -o other.dot",
            ) from None
        write_atomic(dot_path, source.encode("utf-8"))
        raise InputError(
            f"rendering {fmt} needs graphviz's `dot` program, which is not on PATH; "
            f"wrote the DOT source to {dot_path} instead",
            hint=INSTALL_GRAPHVIZ + f"; or render the saved source: dot -T{fmt} {dot_path} -o {output}",
        ) from None
    write_atomic(output, data)
    return len(data)


def _is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(DOT_SIGNATURE)).decode("utf-8", "replace") == DOT_SIGNATURE
    except OSError:
        return False
