"""The table and plot of examples/transfer-digits.sh: mean test accuracy per N and arm.

Reads the ``report.json`` of every ``n<N>-seed<S>-<arm>`` run folder under OUT_DIR (written by
``nncli train``) and prints a Markdown table (mean and min-max over the seeds); ``--plot`` draws
test accuracy against N, one line per arm.

    python examples/transfer_table.py OUT_DIR [--plot transfer.png]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

ARMS = ("scratch", "frozen", "finetuned")


def collect(out: Path) -> dict:
    """{(n, arm): [test accuracy per seed]}"""
    table = defaultdict(list)
    for report in sorted(out.glob("n*-seed*-*/report.json")):
        m = re.fullmatch(r"n(\d+)-seed(\d+)-(\w+)", report.parent.name)
        if m and m.group(3) in ARMS:
            table[(int(m.group(1)), m.group(3))].append(json.loads(report.read_text())["test"]["accuracy"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    table = collect(args.out)
    sizes = sorted({n for n, _ in table})
    seeds = max((len(v) for v in table.values()), default=0)
    print(f"| N per class | {' | '.join(ARMS)} |")
    print("|---:|" + "---:|" * len(ARMS))
    for n in sizes:
        cells = []
        for arm in ARMS:
            accs = table.get((n, arm), [])
            cells.append(
                f"{100 * sum(accs) / len(accs):.1f}% ({100 * min(accs):.0f}-{100 * max(accs):.0f})" if accs else "-"
            )
        print(f"| {n} | {' | '.join(cells)} |")
    print(f"\nmean test accuracy on digits 5-9 over {seeds} seeds (min-max in brackets)")
    if args.plot:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.6, 4.0))
        ax = fig.subplots()
        for arm in ARMS:
            ns = [n for n in sizes if table.get((n, arm))]
            ax.plot(ns, [sum(table[(n, arm)]) / len(table[(n, arm)]) for n in ns], marker="o", label=arm)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("training images per class (digits 5-9)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title("transfer from a digits 0-4 CNN")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
