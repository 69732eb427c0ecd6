"""Structured results of a benchmark script: what `make bench` turns into docs/benchmarks.md.

Each script opens one :class:`Record` and adds rows to named tables as it measures; on exit the
record is written as one JSON document to ``bench-results/<name>.json`` under the repository
(``NNCLI_BENCH_DIR=DIR`` writes it elsewhere), with what the reader of a figure needs to
judge it: the machine (CPU model, cores, memory, GPU), Python and torch versions, the load
average before and after, the date, and the command line. The human-readable lines the scripts
print stay as they were; the JSON is what the report reads, so no figure is typed by hand.

    with Record("params", __doc__) as rec:
        rec.row("ResNet-50", batch=1, nncli_ms=54.0, torchinfo_ms=131.0, ratio=2.42)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "bench-results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def machine() -> dict:
    """The machine and software a figure was measured with."""
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def record_dir() -> Path:
    """``NNCLI_BENCH_DIR``, else ``bench-results/`` at the repository's root."""
    return Path(os.environ.get("NNCLI_BENCH_DIR") or DEFAULT_DIR)


class Record:
    """One run of one benchmark script; a context manager that writes its JSON on a clean exit.

    Args:
        name: the benchmark's short name (``params``); the file is ``<name>.json``.
        doc: the script's docstring: its first paragraph is the page's summary, the rest its method.
    """

    def __init__(self, name: str, doc: str | None):
        self.name = name
        self.doc = (doc or "").strip()
        self.directory = record_dir()
        self.tables: dict[str, dict] = {}
        self.notes: list[str] = []

    def __enter__(self) -> Record:
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self.load_before = _load()
        self.t0 = time.perf_counter()
        self.argv = list(sys.argv[1:])
        return self

    def table(self, title: str, compared: str = "", columns: list[str] | None = None) -> None:
        """Declare a table: its title, what it compares with what, and (optionally) the column order."""
        entry = self.tables.setdefault(title, {"title": title, "compared": compared, "columns": [], "rows": []})
        if compared:
            entry["compared"] = compared
        if columns:
            entry["columns"] = list(columns)

    def row(self, title: str, **values) -> None:
        """Add a row to table ``title`` (created on first use); columns follow the first row's keys."""
        self.table(title)
        entry = self.tables[title]
        for key in values:
            if key not in entry["columns"]:
                entry["columns"].append(key)
        entry["rows"].append({k: _plain(v) for k, v in values.items()})

    def note(self, text: str) -> None:
        """A line of context measured in this run (a count, a check that held), not a verdict."""
        self.notes.append(text)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            return False  # a failed run writes nothing: a partial record would read as a result
        document = {
            "benchmark": self.name,
            "script": Path(sys.argv[0]).name,
            "doc": self.doc,
            "argv": self.argv,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self.t0, 1),
            "load_before": self.load_before,
            "load_after": _load(),
            "machine": machine(),
            "tables": list(self.tables.values()),
            "notes": self.notes,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"[record] {path}", file=sys.stderr)
        return False


def _plain(value):
    """JSON-friendly: floats rounded to 4 significant digits (timings are not more precise)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
