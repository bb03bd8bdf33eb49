"""The layer order stated in rssd/__init__.py is what the imports do: every rssd import goes downward."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rssd

PACKAGE = Path(rssd.__file__).parent


def stated_order() -> list[str]:
    first = rssd.__doc__.split("``boxes`` and the")[0]
    return re.findall(r"``(\w+)``", first.split("checks it):", 1)[1])


def imports_of(path: Path) -> set[str]:
    """The top-level rssd modules one file imports (``from rssd.x import ...``, ``import rssd.x``, lazy ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rssd":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("rssd.")}
    return found


def test_every_module_is_in_the_stated_order():
    order = stated_order()
    assert order[:3] == ["boxes", "priors", "matching"] and order[-1] == "cli"
    modules = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py")}
    assert modules - {"__init__", "__main__"} == set(order)


def test_imports_go_downward():
    order = stated_order()
    rank = {m: k for k, m in enumerate(order)}
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        module = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if module in ("__init__", "__main__"):
            continue
        for target in imports_of(path) - {module}:
            if rank[target] > rank[module]:
                upward.append(f"{rel} imports rssd.{target} (above {module})")
    assert not upward, "\n".join(upward)
    assert not (imports_of(PACKAGE / "boxes.py") - {"boxes"})
    assert all(imports_of(p) <= {"data"} for p in (PACKAGE / "data").rglob("*.py"))


def test_the_checker_sees_lazy_upward_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from rssd.cli import main\n    import rssd.train\n")
    assert imports_of(bad) == {"cli", "train"}


def test_evaluation_and_inference_layers():
    """Scoring sits above the records it reads, inference above scoring; post-processing imports no data code."""
    rank = {m: k for k, m in enumerate(stated_order())}
    assert rank["detect"] < rank["voc_records"] < rank["crowd_eval"] < rank["voc_eval"] < rank["inference"]
    assert rank["inference"] < rank["coco_eval"] and rank["palette"] < min(rank["inference"], rank["viz"])
    assert rank["viz"] < rank["evaluate"]  # the facade re-exports the plots too
    assert imports_of(PACKAGE / "detect.py") <= {"boxes"}  # running a model on files is rssd.inference
    assert not imports_of(PACKAGE / "palette.py")


def test_new_code_imports_evaluation_from_its_homes():
    """``rssd.evaluate`` only re-exports (old imports keep working); rssd, notebooks and benchmarks use the homes."""
    import json

    root = PACKAGE.parent
    users = [p for p in PACKAGE.rglob("*.py") if p.name != "evaluate.py" and "evaluate" in imports_of(p)]
    users += [p for p in sorted((root / "benchmarks").glob("*.py")) if "evaluate" in imports_of(p)]
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if re.search(r"\brssd\.evaluate\b|from rssd import evaluate\b", code):
            users.append(nb)
    assert not users, [str(p.relative_to(root)) for p in users]
