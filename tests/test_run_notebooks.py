"""tools/run_notebooks.py (``make notebooks``): one small notebook in smoke mode, a failing one, the selection."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "run_notebooks.py"


def _module():
    spec = importlib.util.spec_from_file_location("run_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_selection_and_parameters() -> None:
    m = _module()
    assert [p.name for p in m.select(["01"])] == ["01_priors.ipynb"]
    assert m.select(["01_priors", "01_priors.ipynb"]) == m.select(["01"])  # stems, names; no duplicates
    assert m.select([]) == sorted((ROOT / "notebooks").glob("*.ipynb"))
    with pytest.raises(FileNotFoundError, match="no notebook '99'.*01_priors"):
        m.select(["99"])
    assert m.parse_parameters(["SEED=1", "DATA=synth", "SIZES=(1, 2)"]) == {"SEED": 1, "DATA": "synth", "SIZES": (1, 2)}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        m.parse_parameters(["SEED"])


def test_runs_a_notebook_in_smoke_mode_and_reports_a_failing_one(tmp_path: Path) -> None:
    # A notebook that fails only when the parameter injected with -p reaches it (X = 5).
    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_code_cell("X = 1", metadata={"tags": ["parameters"]}),
                 nbformat.v4.new_code_cell("print(1 / (X - 5))")]  # fmt: skip
    bad.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    bad_path = tmp_path / "zz_bad.ipynb"
    nbformat.write(bad, bad_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "01", str(bad_path), "-p", "X=5", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[1/2] 01_priors: ok in" in proc.stdout and "[2/2] zz_bad: failed in" in proc.stdout
    assert "Executing" in proc.stderr  # papermill's progress bar
    with open(out / "times.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["notebook"] for r in rows] == ["01_priors", "zz_bad"]
    assert rows[0]["status"] == "ok" and rows[0]["smoke"] == "True" and float(rows[0]["seconds"]) > 0
    assert rows[1]["status"] == "failed" and "ZeroDivisionError" in rows[1]["error"]
    assert json.loads((out / "times.json").read_text())[0]["notebook"] == "01_priors"
    executed = nbformat.read(out / "01_priors.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)  # every cell ran
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code)  # papermill's -p cell
    pngs = sorted((out / "01_priors").glob("*.png"))
    assert len(pngs) == int(rows[0]["figures"]) > 0 and pngs[0].read_bytes()[:4] == b"\x89PNG"
    assert (out / "zz_bad.ipynb").is_file()  # the failing notebook is kept, up to its error


def test_widget_cells_run_headless_and_keep_what_they_draw(tmp_path: Path) -> None:
    # nbclient's emulation of the Output widget is off (headless_widgets): what `interactive` draws for its initial
    # values is in the cell's own outputs (with the emulation it would sit in the widget's state instead).
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import ipywidgets as widgets\n"
        "widgets.interactive(lambda x=3: print(f'drawn with x={x}'), x=widgets.IntSlider(value=3, max=9))"
    )]  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "zz_widget.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(path), "--out", str(out), "--timeout", "120"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    executed = nbformat.read(out / "zz_widget.ipynb", as_version=4)
    text = "".join(o.get("text", "") for o in executed.cells[0].outputs if o.output_type == "stream")
    assert "drawn with x=3" in text
