"""The ``text`` data set: character-level next-token prediction on any UTF-8 text file.

``data: {name: text, path: corpus.txt, context: 64}`` cuts the text into non-overlapping windows
of ``context`` characters: each example's input is a window of character ids ``[L]`` (int64) and
its target the same window shifted by one character ``[L]``, so a model that outputs ``[L, V]``
logits learns p(next character | the characters so far) at every position. The vocabulary is
the text's distinct characters, sorted (ids 0..V-1; the class names are the characters).

Without ``path`` the text is the one shipped with nncli (:func:`shipped_corpus`): the US
Declaration of Independence and Constitution, public domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.errors import InputError

CORPUS_DIR = Path(__file__).parent / "corpus"
SHIPPED_CORPUS = "us-founding-documents.txt"


def shipped_corpus() -> Path:
    """The public-domain text shipped with nncli, used when ``data: {name: text}`` has no ``path``."""
    return CORPUS_DIR / SHIPPED_CORPUS


def read_text(path: Path) -> str:
    """A UTF-8 text file with its line ends made ``\\n``; InputError (exit 2) when unreadable or empty."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot read {Path(path).name} as UTF-8 text: {exc.reason} at byte {exc.start}",
            file=path,
            hint="the text data set reads UTF-8 text files",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {Path(path).name}: {exc.strerror or exc}", file=path) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def encode_windows(text: str, context: int, path: Path | None = None):
    """``(x [N, L] int64, y [N, L] int64, vocabulary)``: non-overlapping windows and their shifts.

    Window ``i`` covers characters ``i*L .. i*L+L-1``; its target is characters ``i*L+1 .. i*L+L``.
    Windows do not overlap, so a random train/validation split puts no input character of a
    validation window in a training window (only its one extra target character is shared).

    Raises:
        InputError: a text shorter than one window plus one character.
    """
    vocabulary = sorted(set(text))
    n = (len(text) - 1) // context
    if n < 1:
        raise InputError(
            f"data: the text has {len(text)} characters, too few for one window of "
            f"context {context} plus its next character",
            file=path,
            hint="lower `context` or use a longer text",
        )
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    x = ids[: n * context].reshape(n, context)
    y = ids[1 : n * context + 1].reshape(n, context)
    return x, y, vocabulary


def read_text_set(path: Path, context: int):
    """``(x, y, classes)`` of a text file for :func:`nncli.data.load_dataset`."""
    x, y, vocabulary = encode_windows(read_text(path), context, path)
    return x, y, vocabulary
