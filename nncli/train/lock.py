"""One writer per run folder (and per sweep folder): a lock file held with ``flock``.

Two ``nncli train --out SAME`` started together would otherwise both write, leaving one run's
``report.json`` beside the other's ``best.pt``. The lock is ``folder/.nncli.lock``. Whether a
writer lives is decided by an exclusive ``flock`` on it; the JSON inside (PID, host, command
line) only names the writer in the message. The kernel drops an flock when the last descriptor
of that open file is closed, which is when every process holding it has exited, SIGKILL and
power cuts included. Processes a writer starts to write for it (DDP ranks, a sweep's workers)
receive its descriptor through :meth:`FolderLock.share`, so the folder stays locked while any of
them lives, even when the process that took the lock is gone or has released it. So the file
is removed only by a process that holds the flock alone, never while such a process lives: a
newcomer would create a new file and lock that beside them.

A lock file that nobody holds is stale and taken over, whatever it contains. A record naming a
live process on this host, written without an flock, still holds the folder: an older nncli
wrote its lock that way, and where flock is missing (no ``fcntl``) or refused (some network file
systems) the PID is all there is. No torch here.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from nncli.errors import InputError

try:
    import fcntl
except ImportError:  # not POSIX: liveness by PID alone
    fcntl = None

LOCK_NAME = ".nncli.lock"

# (device, inode) of each lock file this process holds -> its descriptor (kept open while held)
_HELD: dict[tuple[int, int], int] = {}


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


def _parse(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}  # empty (a writer between open and write) or garbage
    return holder if isinstance(holder, dict) else {}


def read_lock(folder: str | Path) -> dict | None:
    """The holder recorded in ``folder``'s lock (``{"pid", "host", "command", "started", "flock"}``;
    ``flock``: whether it held the flock, absent from a lock an older nncli wrote), or None.

    ``{}`` when the file exists but holds no readable record. Says nothing about whether the
    holder still runs (see :func:`check_unlocked`).
    """
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return {}
    return _parse(text)


def _record_of(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return _parse(os.read(fd, 1 << 16).decode("utf-8", errors="replace"))
    except OSError:  # a folder named like the lock
        return {}


def _command() -> str:
    """This process's command line as the user typed it (``nncli train ...``)."""
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name in ("nncli", "__main__.py")):
        argv[0] = "nncli"
    return " ".join(argv) or "python"


def _pid_holds(holder: dict, flocked: bool) -> bool:
    """A record that holds the folder by its PID alone: a live process on this host (not this
    one), or a process on another host, which cannot be asked and so stands.

    ``flocked``: the caller took the file's flock just now. A record on this host whose writer held
    the flock (``"flock": true``) is then stale whatever its PID: its writer's processes have all
    closed the file (the writer itself may live on after releasing, its workers having outlived it).
    """
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if holder.get("host") not in (None, socket.gethostname()):
        return True
    if flocked and holder.get("flock") is True:
        return False
    return pid != os.getpid() and _alive(pid)


def _key(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _owned(path: Path) -> bool:
    """Whether this process holds the lock file at ``path`` (taken here, or shared with it)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _HELD


def _try_flock(fd: int) -> bool | None:
    """Take the exclusive flock without blocking: True when taken, False while another open of the
    file holds it, None where there is no flock (no ``fcntl``, or a file system refusing it: the
    PID decides).

    A prober (:func:`check_unlocked`) holds it for an instant only, so a refusal is looked at a
    few times before it counts.
    """
    if fcntl is None:
        return None
    for attempt in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.02 * (attempt + 1))
        except OSError:
            return None
    return False


def _live_holder(path: Path) -> dict | None:
    """The record of the live writer holding the lock file at ``path``, or None when none does."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # missing, or unreadable: acquiring it says what is wrong
        return None
    try:
        flocked = _try_flock(fd)
        holder = _record_of(fd)
    finally:
        os.close(fd)  # drops the probe's flock
    if flocked is False:
        return holder
    return holder if holder and _pid_holds(holder, flocked is True) else None


def check_unlocked(folder: str | Path, what: str = "run") -> None:
    """Raise the holder's exit-2 error when a live process holds ``folder`` (nothing is taken).

    Called before a folder is inspected, so a second writer hears about the first one rather
    than about the files it is writing. A lock this process holds (a DDP rank's, shared by its
    launcher) is the writer itself.
    """
    path = Path(folder) / LOCK_NAME
    if _owned(path):
        return
    holder = _live_holder(path)
    if holder is not None:
        raise _held_error(Path(folder), what, holder)


def _held_error(folder: Path, what: str, holder: dict) -> InputError:
    pid = holder.get("pid")
    where = f" on {holder['host']}" if holder.get("host") else ""
    command = holder.get("command", "?")
    lock = folder / LOCK_NAME
    if isinstance(pid, int) and holder.get("host") in (None, socket.gethostname()) and not _alive(pid):
        return InputError(
            f"{folder}: processes started by an nncli process that has exited (PID {pid}{where}: {command}) "
            f"are still writing this {what} folder",
            file=lock,
            hint="wait for them to stop (DDP ranks and sweep workers stop soon after their launcher); "
            "the lock is free once the last of them has exited",
        )
    return InputError(
        f"{folder}: another nncli process is writing this {what} folder (PID {pid if pid is not None else '?'}"
        + f"{where}: {command})",
        file=lock,
        hint=f"wait for it to finish, or pick another folder; if PID {pid} is not an nncli process, delete {lock}",
    )


def _open_lock_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except IsADirectoryError:
        raise InputError(
            f"cannot use {path}: it is a folder, not a lock file",
            file=path,
            hint="delete it (no nncli process makes a folder there)",
        ) from None
    return fd


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing writer unlinks it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == _key(fd)


def _write_record(fd: int, flocked: bool) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "flock": flocked,
    }
    data = json.dumps(record).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


class FolderLock:
    """Hold ``folder/.nncli.lock`` while writing into ``folder``; a context manager.

    Args:
        folder: the run or sweep folder (created if missing).
        what: "run" or "sweep", for the message.

    Raises:
        InputError: (on enter) another live process holds the folder: exit 2 naming its PID and
            command; or the lock's path is a folder.
    """

    def __init__(self, folder: str | Path, what: str = "run") -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_NAME
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(50):  # a releasing writer unlinks the file under us: open it again
            fd = _open_lock_file(self.path)
            try:
                flocked = _try_flock(fd)
                if flocked is False:
                    raise _held_error(self.folder, self.what, _record_of(fd))
                if not _same_file(fd, self.path):
                    os.close(fd)
                    continue
                holder = _record_of(fd)
                if holder and _pid_holds(holder, flocked is True):  # a writer that took no flock
                    raise _held_error(self.folder, self.what, holder)
                _write_record(fd, flocked is True)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self.held = fd, True
            _HELD[_key(fd)] = fd
            return self
        raise InputError(
            f"{self.folder}: could not take the {self.what} lock {self.path}",
            hint="another process keeps taking it; try again",
        )

    def share(self) -> SharedLock:
        """A handle that, pickled into a process being spawned (a multiprocessing ``spawn`` child's
        arguments), gives that process this lock's descriptor: the folder stays locked until this
        process and every such child have exited."""
        if not self.held or self._fd is None:
            raise RuntimeError("share() of a lock that is not held")
        return SharedLock(self._fd)

    def release(self) -> None:
        """Drop this process's hold; the lock file goes once no process holds it any more.

        Processes given the lock (:meth:`share`, :func:`held_locks`) that still live keep the
        folder locked: the file stays, for a newcomer would otherwise create a new one and lock
        it beside them. Never ``LOCK_UN``: on a shared descriptor it would unlock theirs too.
        """
        if not self.held or self._fd is None:
            return
        fd, self._fd, self.held = self._fd, None, False
        key = _key(fd)
        _HELD.pop(key, None)
        os.close(fd)
        _unlink_if_free(self.path, key)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def _unlink_if_free(path: Path, key: tuple[int, int]) -> None:
    """Remove the lock file ``key`` (device, inode) at ``path`` if nobody holds it.

    Only a holder of the flock may unlink: this opens the file anew and takes the flock, which
    fails while a process the lock was shared with lives (the file then stays, and is taken over
    once they are gone). A newcomer that opened the file before the unlink finds it gone once it
    has the flock, and opens the path again (:meth:`FolderLock.acquire`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        if _key(fd) == key and _try_flock(fd) is not False:
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


def held_locks() -> tuple[SharedLock, ...]:
    """Every lock this process holds, to hand to the worker processes it spawns (their arguments)."""
    return tuple(SharedLock(fd) for fd in _HELD.values())


class SharedLock:
    """A held lock's descriptor, as a spawned child receives it (see :meth:`FolderLock.share`).

    The child keeps the descriptor open until it exits and counts the folder as its own
    (:func:`check_unlocked` lets it through). Pickling outside a spawn is refused.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import context, reduction

        if context.get_spawning_popen() is None:
            raise TypeError("a SharedLock travels only in the arguments of a process being spawned")
        return _adopt, (reduction.DupFd(self.fd),)


def _adopt(dup) -> SharedLock:
    """In the spawned child: keep the inherited descriptor for this process's life."""
    fd = dup.detach()
    os.set_inheritable(fd, False)  # programs this process runs do not hold the folder
    _HELD[_key(fd)] = fd
    return SharedLock(fd)
