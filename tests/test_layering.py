"""The import contracts hold for the source tree, and the checker catches a broken tree."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.layering import violations

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_source_tree_keeps_every_import_contract() -> None:
    assert violations(SRC) == []


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(SRC / "fedsilo", tmp_path / "fedsilo", ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


def test_privacy_importing_the_runtime_breaks_the_contract(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    target = src / "fedsilo" / "privacy" / "accounting.py"
    target.write_text(target.read_text() + "\nfrom fedsilo.runtime.messages import Message\n")
    found = violations(src)
    assert len(found) == 1
    assert found[0].startswith("fedsilo/privacy/accounting.py:")
    assert "fedsilo.privacy.accounting imports fedsilo.runtime.messages" in found[0]


def test_relative_lazy_and_type_checking_imports_count_too(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    bad = src / "fedsilo" / "privacy" / "secagg" / "sneaky.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from fedsilo.config import JobConfig\n"
        "def f() -> None:\n"
        "    from ...runtime import seeds\n"
        "    import rich\n"
    )
    found = "\n".join(violations(src))
    assert "sneaky.py:3: fedsilo.privacy.secagg.sneaky imports fedsilo.config" in found
    assert "sneaky.py:5: fedsilo.privacy.secagg.sneaky imports fedsilo.runtime" in found
    assert "sneaky.py:6: fedsilo.privacy.secagg.sneaky imports rich" in found


def test_the_cli_may_import_typer_and_rich(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    cli = src / "fedsilo" / "cli"
    if not cli.is_dir():  # before the CLI became a package
        (src / "fedsilo" / "cli.py").unlink()
        cli.mkdir()
        (cli / "__init__.py").write_text("")
    (cli / "extra.py").write_text("import typer\nfrom rich.table import Table\n")
    assert not [v for v in violations(src) if "fedsilo/cli" in v]
