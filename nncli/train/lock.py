"""One writer per run folder (and per sweep folder): an exclusive lock file.

Two ``nncli train --out SAME`` started together would otherwise both write, leaving one run's
``report.json`` beside the other's ``best.pt``. The lock is a file created with ``O_CREAT |
O_EXCL`` (atomic on local file systems) holding the owner's PID, host and command line. A
second writer exits 2 naming them. A lock left by a process that no longer exists (SIGKILL, a
power cut) is stale and taken over. No torch here.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from nncli.errors import InputError

LOCK_NAME = ".nncli.lock"


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_lock(folder: str | Path) -> dict | None:
    """The holder recorded in ``folder``'s lock (``{"pid", "host", "command", "started"}``), or None."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}  # half-written by a writer killed between open and write: treated as stale
    return holder if isinstance(holder, dict) else {}


def _command() -> str:
    """This process's command line as the user typed it (``nncli train ...``)."""
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name in ("nncli", "__main__.py")):
        argv[0] = "nncli"
    return " ".join(argv) or "python"


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _stale(holder: dict) -> bool:
    """A lock whose process is gone (on this host), or one whose content is unreadable."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    if holder.get("host") not in (None, socket.gethostname()):
        return False  # another machine's process: we cannot tell, so it stands
    return pid != os.getpid() and not _alive(pid)


def check_unlocked(folder: str | Path, what: str = "run") -> None:
    """Raise the holder's exit-2 error when a live process holds ``folder`` (nothing is taken).

    Called before a folder is inspected, so a second writer hears about the first one rather
    than about the files it is writing.
    """
    holder = read_lock(folder)
    # held by this process, or by the launcher of this DDP worker: that is the writer itself
    if holder and not _stale(holder) and holder.get("pid") not in (os.getpid(), os.getppid()):
        raise _held_error(Path(folder), what, holder)


def _held_error(folder: Path, what: str, holder: dict) -> InputError:
    pid = holder.get("pid")
    return InputError(
        f"{folder}: another nncli process is writing this {what} folder (PID {pid}"
        + (f" on {holder['host']}" if holder.get("host") else "")
        + f": {holder.get('command', '?')})",
        file=folder / LOCK_NAME,
        hint=f"wait for it to finish, or pick another folder; if PID {pid} is not an nncli process, "
        f"delete {folder / LOCK_NAME}",
    )


class FolderLock:
    """Hold ``folder/.nncli.lock`` while writing into ``folder``; a context manager.

    Args:
        folder: the run or sweep folder (created if missing).
        what: "run" or "sweep", for the message.

    Raises:
        InputError: (on enter) another live process holds the folder: exit 2 naming its PID and
            command.
    """

    def __init__(self, folder: str | Path, what: str = "run") -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_NAME
        self.held = False

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": _command(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
        for _ in range(50):  # a stale lock's take-over can race another taker: look again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(self.folder)
                if holder is None:  # released meanwhile
                    continue
                if holder == {} and _age(self.path) < 5.0:  # created, its record not written yet
                    time.sleep(0.05)
                    continue
                if not _stale(holder):
                    raise _held_error(self.folder, self.what, holder) from None
                try:
                    self.path.unlink()  # stale: its process is gone
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(record)
            self.held = True
            return self
        raise InputError(
            f"{self.folder}: could not take the {self.what} lock {self.path}",
            hint="another process keeps taking it; try again",
        )

    def release(self) -> None:
        """Remove the lock if it is still this process's."""
        if not self.held:
            return
        self.held = False
        holder = read_lock(self.folder)
        if holder and holder.get("pid") == os.getpid():
            try:
                self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
