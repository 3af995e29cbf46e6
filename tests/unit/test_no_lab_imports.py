"""The product does not import the lab, and the lab does not import the product.

The product finds the lab's systems the way it finds a real site's (a site profile or
saved blocks), and starts or stops the lab only as a separate program (``python -m lab``,
run by ``draas.cli.run_lab``). An import of ``lab`` anywhere in the product would let lab
knowledge creep back in; this walks every module's syntax tree, so an import inside a
function or under ``if TYPE_CHECKING:`` is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("draas", "flows", "tasks", "blocks", "deployments")


def modules(*packages: str) -> list[Path]:
    found = [p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert found, f"no modules under {packages}"
    return found


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``, including dynamic ``import_module``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


@pytest.mark.parametrize("path", modules(*PRODUCT_PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_product_module_does_not_import_the_lab(path: Path) -> None:
    offending = [line for line, root in imported_roots(path) if root == "lab"]
    assert not offending, (f"{path.relative_to(ROOT)} imports the lab (line {offending}); find systems "
                           "through draas.site and start the lab with draas.cli.run_lab")


@pytest.mark.parametrize("path", modules("lab"), ids=lambda p: str(p.relative_to(ROOT)))
def test_lab_module_does_not_import_the_product(path: Path) -> None:
    offending = [(line, root) for line, root in imported_roots(path) if root in PRODUCT_PACKAGES]
    assert not offending, f"{path.relative_to(ROOT)} imports the product: {offending}"


def test_the_walk_finds_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nif TYPE_CHECKING:\n    from lab.state import LabState\n"
                      "def f():\n    import lab.launcher\n    importlib.import_module('lab.vcsim')\n"
                      "from . import lab\n")
    assert imported_roots(sample) == [(1, "os"), (3, "lab"), (5, "lab"), (6, "lab")]


def test_the_seam_runs_the_lab_as_a_program() -> None:
    """The only way in: ``python -m lab`` as a subprocess, found by its text, not by import."""
    source = (ROOT / "draas" / "cli.py").read_text()
    assert '"-m", "lab"' in source
    assert (ROOT / "lab" / "__main__.py").is_file()
