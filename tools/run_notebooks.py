"""Run the notebooks headless, end to end, as "Run All" would (``make notebooks``), with papermill.

Each notebook runs in a fresh kernel from ``notebooks/`` (so its relative paths hold), at full size unless
``--smoke`` (which sets ``RSSD_SMOKE=1``, the switch every notebook's ``parameters`` cell reads). ``-p NAME=VALUE``
overrides a parameter through papermill (injected after the ``parameters`` cell). Written under ``--out``
(default ``runs/notebooks/``):

* ``<name>.ipynb``: the executed copy, outputs and figures included (also when a cell fails: up to that cell);
* ``<name>/cell<k>_<j>.png``: each PNG figure of it (``--no-png`` to skip);
* ``times.csv`` and ``times.json``: per notebook its status (``ok`` / ``failed``), seconds, figure count, error.

Progress: papermill's bar over the cells of each notebook, and one line per notebook with its time.

    python tools/run_notebooks.py [--smoke] [--out runs/notebooks] [NOTEBOOK ...]   # names, prefixes (01) or paths

The exit status is 0 when every notebook ran through, 1 otherwise (the others still run unless
``--stop-on-error``); 2 for a selection that names no notebook.
"""

from __future__ import annotations

import argparse
import ast
import base64
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def select(names: list[str], folder: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks named by ``names`` (file names, stems, number prefixes such as ``01``, or paths), in order.

    Raises:
        FileNotFoundError: a name matches no notebook (the message lists those there are).
    """
    available = sorted(folder.glob("*.ipynb"))
    if not names:
        return available
    chosen: list[Path] = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            hits = [path.resolve()]
        else:
            hits = [p for p in available if p.name == name or p.stem == name or p.stem.startswith(f"{name}_")]
        if not hits:
            raise FileNotFoundError(
                f"no notebook {name!r} in {folder} (there are: {', '.join(p.stem for p in available)})"
            )
        chosen += [h for h in hits if h not in chosen]
    return chosen


def parse_parameters(items: list[str]) -> dict[str, Any]:
    """``["SEED=1", "DATA=synth"]`` -> ``{"SEED": 1, "DATA": "synth"}`` (Python literals, else strings)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"-p takes NAME=VALUE, got {item!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def export_pngs(executed: Path, folder: Path) -> int:
    """Write every ``image/png`` output of an executed notebook as ``folder/cell<k>_<j>.png``; returns the count."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    count = 0
    for k, cell in enumerate(nb.cells):
        for j, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {}).get("image/png")
            if data:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"cell{k:02d}_{j}.png").write_bytes(base64.b64decode(data))
                count += 1
    return count


def headless_widgets() -> None:
    """Let widget cells run headless: no emulation of ipywidgets' ``Output`` widget by nbclient.

    nbclient mimics a front end's ``Output`` widget (what ``widgets.interactive`` draws into) by sending comm
    messages to the kernel on the shell channel while it waits on that channel for the cell's reply; here that
    left "Run All" waiting forever, at random, on a cell with ``widgets.interactive`` (three of four widget
    notebooks at full size; known upstream as jupyter/nbclient#312). Without the emulation, what the widget's
    function draws for its initial values lands in the cell's outputs (and in the exported PNGs), and nothing is
    sent to the kernel.
    """
    from nbclient.client import NotebookClient

    NotebookClient.on_comm_open_jupyter_widget = lambda self, msg: None


def run_one(notebook: Path, out: Path, params: dict[str, Any], png: bool, timeout: float | None) -> dict[str, Any]:
    """Execute one notebook with papermill; returns its row of ``times.csv``."""
    import papermill as pm

    headless_widgets()

    executed = out / notebook.name
    t0 = time.perf_counter()
    error = ""
    try:
        pm.execute_notebook(
            str(notebook), str(executed), parameters=params, cwd=str(notebook.parent), progress_bar=True,
            request_save_on_cell_execute=True, execution_timeout=timeout, kernel_name="python3",
        )  # fmt: skip
        status = "ok"
    except pm.PapermillExecutionError as e:
        status, error = "failed", f"cell {e.exec_count}: {e.ename}: {e.evalue}"[:500]
    except Exception as e:  # the kernel died, a timeout, an unreadable notebook
        status, error = "failed", f"{type(e).__name__}: {e}"[:500]
    seconds = time.perf_counter() - t0
    figures = export_pngs(executed, out / notebook.stem) if png and executed.is_file() else 0
    return {"notebook": notebook.stem, "status": status, "seconds": round(seconds, 1), "figures": figures,
            "executed": str(executed), "error": error}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="names, stems, prefixes (01) or paths; default all")
    p.add_argument("--smoke", action="store_true", help="RSSD_SMOKE=1: every notebook at its tiny sizes")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "notebooks", help="executed copies, PNGs, times")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    p.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: none)")
    p.add_argument("--no-png", action="store_true", help="do not export the figures as PNG files")
    p.add_argument("--stop-on-error", action="store_true", help="stop at the first notebook that fails")
    args = p.parse_args(argv)
    try:
        notebooks = select(args.notebooks)
        params = parse_parameters(args.param)
    except (FileNotFoundError, ValueError) as e:
        print(f"run_notebooks: {e}", file=sys.stderr)
        return 2
    if args.smoke:
        os.environ["RSSD_SMOKE"] = "1"  # the kernels inherit it
    # figures go into the executed notebook (a MPLBACKEND=Agg left in the environment would drop them)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode = "smoke" if os.environ.get("RSSD_SMOKE") == "1" else "full size"
    print(f"running {len(notebooks)} notebook(s) at {mode} -> {out}", flush=True)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for i, nb in enumerate(notebooks, start=1):
        row = run_one(nb, out, params, not args.no_png, args.timeout)
        row["smoke"] = mode == "smoke"
        rows.append(row)
        note = f" ({row['error']})" if row["error"] else ""
        print(f"[{i}/{len(notebooks)}] {nb.stem}: {row['status']} in {row['seconds']:.1f} s, "
              f"{row['figures']} figure(s){note}", flush=True)  # fmt: skip
        _write_times(out, rows)
        if row["status"] != "ok" and args.stop_on_error:
            break
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    total = time.perf_counter() - t_all
    print(f"{len(rows) - len(failed)}/{len(notebooks)} ran through in {total:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else "") + f"; times in {out / 'times.csv'}")  # fmt: skip
    return 1 if failed or len(rows) < len(notebooks) else 0


def _write_times(out: Path, rows: list[dict[str, Any]]) -> None:
    with open(out / "times.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "times.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
