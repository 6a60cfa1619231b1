"""The layering of ARCHITECTURE.md holds: the import-linter contracts of pyproject.toml pass on the
package, fail when one import goes against the arrow, and name the same layers as the document."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the `evalsvc` package found first on the path: the one under `package_parent`."""
    environment = os.environ | {"PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=package_parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_import_follows_the_layers() -> None:
    checked = lint_imports(REPO_ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


def test_an_import_against_the_arrow_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "evalsvc", tmp_path / "evalsvc", ignore=shutil.ignore_patterns("__pycache__"))
    models = tmp_path / "evalsvc" / "store" / "models.py"
    models.write_text(models.read_text() + "\nfrom evalsvc.reports.summary import run_summary  # noqa\n")
    checked = lint_imports(tmp_path)
    assert checked.returncode != 0
    assert "evalsvc.store is not allowed to import evalsvc.reports" in checked.stdout
    assert "evalsvc.store.models -> evalsvc.reports.summary" in checked.stdout


def test_architecture_md_names_every_layer_of_the_contract() -> None:
    document = (REPO_ROOT / "ARCHITECTURE.md").read_text()
    [layers] = [contract["layers"] for contract in CONFIG["contracts"] if contract["type"] == "layers"]
    modules = [name.strip() for layer in layers for name in layer.split("|")]
    assert modules, "no layers"
    named = set(re.findall(r"`(evalsvc(?:\.\w+)+)`", document))
    assert [module for module in modules if module not in named] == []


def test_every_top_level_module_has_a_layer() -> None:
    """A new module or package of evalsvc must be placed in a layer, or the contract says nothing of it."""
    [layers] = [contract["layers"] for contract in CONFIG["contracts"] if contract["type"] == "layers"]
    placed = {name.strip().removeprefix("evalsvc.") for layer in layers for name in layer.split("|")}
    package = REPO_ROOT / "evalsvc"
    present = {path.stem for path in package.glob("*.py") if path.stem not in ("__init__", "__main__")}
    present |= {path.name for path in package.iterdir() if (path / "__init__.py").is_file()}
    assert sorted(present - placed) == []
