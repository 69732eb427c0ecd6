"""Processes as Linux's /proc shows them, for the tests that kill a launcher or a sweep and check
what it started: its children, their descendants, and whether each still runs."""

from __future__ import annotations

import os
from pathlib import Path


def children(pid: int) -> list[int]:
    """``pid``'s child processes (empty where the kernel does not list them)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``: its children, theirs, and so on."""
    found, todo = [], [pid]
    while todo:
        below = children(todo.pop())
        found += below
        todo += below
    return found


def ranks_of(pid: int) -> list[int]:
    """The DDP ranks among ``pid``'s children (multiprocessing's spawned workers)."""
    ranks = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            ranks.append(child)
    return ranks


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting to be reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def holds_file(pid: int, path) -> bool:
    """Whether ``pid`` has ``path`` open (also once the file was removed: ``path (deleted)``)."""
    name = str(Path(path).resolve())
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target == name or target == f"{name} (deleted)":
            return True
    return False
