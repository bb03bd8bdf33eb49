"""Write the README's crowd-experiment tables from ``doc/results/<grid>/summary.json``.

The README's Results section keeps each table between ``<!-- NAME -->`` and ``<!-- /NAME -->``; this script
rewrites what is between the markers from the grid's summary (written by ``rssd experiment crowd --report``), so
the numbers in the README are the files' numbers. ``--check`` changes nothing and exits 1 when the README differs
(the test suite runs it).

    python tools/readme_results.py           # rewrite the tables in README.md
    python tools/readme_results.py --check   # is README.md in sync with doc/results?
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rssd.experiments.crowd import _fmt_values  # noqa: E402

# marker -> grid whose summary fills it
TABLES = {"crowd-table": "crowd-cpu", "crowd-4k-table": "crowd-cpu-4k"}
COLUMNS = ["AP50 all", "crowd, remove", "crowd, ignore", "MR^-2 person", "person AP heavy"]
NAMES = {"repgt": "`repgt` (sigma 1)", "repgt-excess": "`repgt-excess` (rssd's own)"}


def _name(variant: str) -> str:
    return NAMES.get(variant, f"`{variant}`")


def _count(s: dict) -> str:
    return f"{s['mean']:.1f} ({' / '.join(f'{x:.0f}' for x in s['values'])})"


def table(summary: dict) -> str:
    """The two tables (per variant, and paired to the reference) of one grid, as markdown."""
    lines = [
        "| variant | seeds | " + " | ".join(COLUMNS) + " | FPs *between* two objects |",
        "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " | --- |",
    ]
    for v, e in summary["variants"].items():
        seeds = ", ".join(map(str, e["seeds"]))
        cells = [_fmt_values(e[c]) for c in COLUMNS] + [_count(e["error_kinds"]["between"])]
        lines.append(f"| {_name(v)} | {seeds} | " + " | ".join(cells) + " |")
    ref = summary.get("reference", "ssd")
    lines += [
        "",
        f"| paired difference to `{ref}` (same seeds), points | seeds | " + " | ".join(COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for key, e in summary.get("paired", {}).items():
        if e.get("to", ref) != ref:
            continue
        v = key.split(" - ")[0]
        seeds = ", ".join(map(str, e["seeds"]))
        lines.append(f"| {_name(v)} | {seeds} | " + " | ".join(_fmt_values(e[c], signed=True) for c in COLUMNS) + " |")
    return "\n".join(lines)


def render(readme: str, results: Path = ROOT / "doc" / "results") -> str:
    """``readme`` with every marked table rewritten from its grid's summary."""
    for marker, grid in TABLES.items():
        pattern = re.compile(rf"(<!-- {re.escape(marker)} -->\n).*?(<!-- /{re.escape(marker)} -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md: marker <!-- {marker} --> ... <!-- /{marker} --> not found")
        summary = json.loads((results / grid / "summary.json").read_text())
        readme = pattern.sub(lambda m, s=summary: m.group(1) + table(s) + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if README.md is out of date")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    old = args.readme.read_text()
    new = render(old)
    if new == old:
        print(f"{args.readme}: tables match doc/results")
        return 0
    if args.check:
        print(f"{args.readme}: tables differ from doc/results; run python tools/readme_results.py", file=sys.stderr)
        return 1
    args.readme.write_text(new)
    print(f"{args.readme}: tables rewritten from doc/results")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
