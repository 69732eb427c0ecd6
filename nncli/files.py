"""Writing files so that a reader, a crash or Ctrl-C never leaves half of one.

Every file nncli writes (checkpoints, metrics, reports, sweep results, diagrams, plots) goes
through :func:`write_atomic`: the bytes go to a temporary file beside the target, which is then
renamed over it. A rename within one folder is atomic on POSIX and Windows, so the target is
always either the old file or the complete new one.
"""

from __future__ import annotations

import os
import secrets
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

# O_EXCL: never open a file that is already there (a stale temp file, or someone's symlink).
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def write_atomic(path: str | Path, data: bytes | str, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new one.

    The data is written to a temporary file in the same folder and renamed over ``path``. On any
    failure (a full disk, an interrupt) the temporary file is removed and ``path`` is left as it
    was. A new file gets the permissions a plain ``open(path, "w")`` would give (0666 less the
    umask); a replaced file keeps its mode.

    Args:
        path: the file to write; its folder must exist.
        data: the content; ``str`` is written as UTF-8.
        durable: also fsync before the rename, so the new content survives a power cut and not
            only a killed process (checkpoints, results); files rewritten every epoch skip it.

    Raises:
        OSError: the folder is missing or not writable, or the write failed; ``path`` unchanged.

    Example:
        >>> write_atomic("runs/a/report.json", '{"status": "completed"}\\n', durable=True)
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        old_mode = None
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if old_mode is not None:
            os.chmod(tmp, old_mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _create_beside(path: Path) -> tuple[int, Path]:
    # Not tempfile.mkstemp: it creates 0600 files, and restoring open()'s permissions would need
    # the umask, which Python can only read by setting it (a race with threads that create files,
    # such as train's background checkpoint writer). os.open with 0o666 lets the kernel apply it.
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


class OneThread:
    """Runs submitted calls on one background thread, in the order submitted. ``wait()`` blocks
    until everything submitted has run and re-raises a failed call; ``close()`` waits, then stops
    the thread. Run files and a tracking store are both written so, beside training."""

    def __init__(self, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pending: list = []

    def submit(self, fn, *args) -> Future:
        future = self.pool.submit(fn, *args)
        self.pending.append(future)
        return future

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
