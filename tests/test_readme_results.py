"""The README's crowd-experiment tables are the files' numbers (tools/readme_results.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_results", ROOT / "tools" / "readme_results.py")
readme_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_results)


def _s(values):
    import statistics

    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}  # fmt: skip


def test_table_formats_mean_spread_and_seeds_by_hand():
    metrics = {c: _s([0.5, 0.7]) for c in readme_results.COLUMNS}
    diffs = {c: _s([-0.01, 0.03]) for c in readme_results.COLUMNS}
    summary = {
        "reference": "ssd",
        "variants": {"ssd": {"seeds": [0, 1], **metrics, "error_kinds": {"between": _s([3.0, 5.0])}}},
        "paired": {"repgt - ssd": {"to": "ssd", "seeds": [0, 1], **diffs},
                   "repgt - other": {"to": "other", "seeds": [0], **metrics}},
    }  # fmt: skip
    lines = readme_results.table(summary).splitlines()
    # mean 60.0, sample std of (50, 70) = 14.1; between: mean 4 of 3 and 5
    assert lines[2] == "| `ssd` | 0, 1 | " + " | ".join(["60.0 ± 14.1 (50.0 / 70.0)"] * 5) + " | 4.0 (3 / 5) |"
    assert lines[-1] == "| `repgt` (sigma 1) | 0, 1 | " + " | ".join(["+1.0 ± 2.8 (-1.0 / +3.0)"] * 5) + " |"
    assert not any("other" in line for line in lines)  # only pairs to the reference


def test_readme_tables_match_doc_results():
    readme = (ROOT / "README.md").read_text()
    assert readme_results.render(readme) == readme, "run: python tools/readme_results.py"
    for marker in readme_results.TABLES:
        assert f"<!-- {marker} -->\n| variant |" in readme
