"""Import contracts: which fedsilo packages may import which (docs/architecture.md, Layers).

Every ``import`` / ``from ... import`` in a module counts, wherever it sits (module level,
inside a function, under ``TYPE_CHECKING``), relative imports resolved. :func:`violations`
walks a source tree with :mod:`ast` and never imports it, so it can check a broken tree too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Forbidden:
    """Modules under ``importers`` must not import anything under ``imported``."""

    importers: tuple[str, ...]
    imported: tuple[str, ...]
    why: str
    except_in: tuple[str, ...] = ()  # importers exempt from the rule

    def applies_to(self, module: str) -> bool:
        return _under(module, self.importers) and not _under(module, self.except_in)


PURE = ("fedsilo.aggregation", "fedsilo.data", "fedsilo.models", "fedsilo.training")

CONTRACTS = (
    Forbidden(
        (*PURE, "fedsilo.privacy"),
        ("fedsilo.runtime", "fedsilo.deploy", "fedsilo.cli"),
        "the pure core never imports the round loop, the deployment or the CLI",
    ),
    Forbidden(PURE, ("fedsilo.protocol",), "the pure core knows no wire format"),
    Forbidden(
        ("fedsilo.privacy",),
        ("fedsilo.config",),
        "privacy/ takes plain arguments, never the job config",
    ),
    Forbidden(
        ("fedsilo",),
        ("typer", "rich"),
        "only the CLI prints: nothing but fedsilo.cli imports typer or rich",
        except_in=("fedsilo.cli",),
    ),
)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import statement in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from fedsilo import runtime` imports fedsilo.runtime
                yield node.lineno, f"{target}.{alias.name}"


def violations(src: Path) -> list[str]:
    """Every import in ``src`` (the directory holding ``fedsilo/``) that breaks a contract."""
    found = []
    for path in sorted((src / "fedsilo").rglob("*.py")):
        module = module_name(path, src)
        rules = [c for c in CONTRACTS if c.applies_to(module)]
        if not rules:
            continue
        hits: dict[tuple[int, Forbidden], set[str]] = {}
        for line, target in imports(path, module):
            for rule in rules:
                if _under(target, rule.imported):
                    hits.setdefault((line, rule), set()).add(target)
        for (line, rule), targets in hits.items():
            for target in targets:  # `from a import b` hits a and a.b: name a only
                if not any(t != target and _under(target, (t,)) for t in targets):
                    where = path.relative_to(src)
                    found.append(f"{where}:{line}: {module} imports {target} ({rule.why})")
    return sorted(found)
