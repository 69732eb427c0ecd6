"""Run the hostile cases and write the figures per category to a JSON file.

    .venv/bin/python tests/hostile/hostile_report.py --out hostile.json          # every case
    .venv/bin/python tests/hostile/hostile_report.py --fast --out hostile.json   # the fast subset

The file holds, per category and in total: cases, exit 3s, hangs (killed after 60 s), invalid
JSON under --json, tracebacks and unexpected outcomes, then one line per unexpected case. Exit 1
when any case went wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_cases import CATEGORIES, all_cases, fast_cases  # noqa: E402
from hostile_harness import figures, run_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--fast", action="store_true", help="only the default suite's subset")
    parser.add_argument(
        "--category", action="append", choices=sorted(CATEGORIES), help="only this category (repeatable)"
    )
    parser.add_argument("--only", help="only cases whose id contains this text")
    parser.add_argument("--workers", type=int, default=2, help="cases run at a time")
    args = parser.parse_args(argv)
    cases = fast_cases() if args.fast else all_cases()
    if args.category:
        cases = [c for c in cases if c.category in args.category]
    if args.only:
        cases = [c for c in cases if args.only in c.id]
    with tempfile.TemporaryDirectory(prefix="nncli-hostile-") as root:
        outcomes = run_all(cases, Path(root), workers=args.workers)
    result = figures(outcomes)
    result["unexpected"] = [o.describe() for o in outcomes if not o.ok]
    result["seconds"] = {o.case.id: round(o.seconds, 2) for o in outcomes}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["total"]))
    for line in result["unexpected"]:
        print(line)
    return 1 if result["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
