"""The layering contract of shared/architecture.md, checked on the source: the "never" arrows.

Each rule names who may not import what. Imports are read with `ast`, so a forbidden import
fails here whether or not the code path runs; rule 1 concerns module level only (a lazy
import inside a function is how heavy libraries are meant to be reached), the others every
import. A rule with a known exception names it, with the reason, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "edgecxr"
DEVICE = ("runtime", "backends", "scope", "parity", "bench", "web", "dicomnet", "explain", "core")
HEAVY = ("torch", "transformers", "edgecxr.training", "edgecxr.exporters")


def imports(path: Path, module_level_only: bool) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of each import in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:  # `if TYPE_CHECKING:` blocks and try/except at module level count too
        nodes = [n for top in tree.body for n in ast.walk(top) if not isinstance(top, (ast.FunctionDef,
                 ast.AsyncFunctionDef, ast.ClassDef))]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            module = node.module
            if node.level:
                base = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level]
                module = ".".join((*base, module))
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def files_of(*packages: str) -> list[Path]:
    out = []
    for name in packages:
        folder = PACKAGE / name
        out += sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{name}.py"]
    return out


def violations(sources: list[Path], forbidden: tuple[str, ...], module_level_only: bool = False,
               private_of: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in sources:
        for line, module, names in imports(path, module_level_only):
            hit = any(module == f or module.startswith(f + ".") for f in forbidden)
            private = any(module == p or module.startswith(p + ".") for p in private_of) and \
                any(n.startswith("_") for n in names)
            if hit or private:
                shown = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path.name
                bad.append(f"{shown}:{line} imports {module} {names or ''}".rstrip())
    return bad


RULES = {
    "the device runtime never imports torch, transformers, training/ or exporters/ at module level":
        (files_of(*DEVICE), HEAVY, True),
    "core never imports the loop, the CLI, an engine or dicomnet (nor any layer above it)":
        (files_of("core"), ("edgecxr.runtime", "edgecxr.cli", "edgecxr.backends", "edgecxr.dicomnet", "edgecxr.web",
                            "edgecxr.scope", "edgecxr.parity", "edgecxr.bench", "edgecxr.explain", "edgecxr.service",
                            "edgecxr.training", "edgecxr.exporters"), False),
    "scope/ (the gate) is pure: no loop, CLI, engine, dicomnet or web":
        (files_of("scope"), ("edgecxr.runtime", "edgecxr.cli", "edgecxr.backends", "edgecxr.dicomnet",
                             "edgecxr.web", "edgecxr.parity"), False),
    "runners know nothing of the loop": (files_of("backends"), ("edgecxr.runtime", "edgecxr.cli"), False),
    "the listener knows nothing of engines": (files_of("dicomnet"), ("edgecxr.backends",), False),
    "the web page imports no engine": (files_of("web"), ("edgecxr.backends",), False),
    "exporters never import bench": (files_of("exporters"), ("edgecxr.bench",), False),
    "dicomnet and the page read results through core.results, never the loop":
        (files_of("dicomnet", "web"), ("edgecxr.runtime",), False),
    # parity measures the engine the device would choose on inputs prepared as the watcher prepares them,
    # so it uses runtime.selection and runtime.prepare; nothing else of the loop
    "parity uses the loop's engine choice and input preparation, nothing else of it":
        (files_of("parity"), tuple(f"edgecxr.runtime.{p.stem}" for p in sorted((PACKAGE / "runtime").glob("*.py"))
                                   if p.stem not in ("selection", "prepare")), False),
}
KNOWN: dict[str, dict[str, str]] = {}  # rule -> files allowed for now, with the reason (none today)


@pytest.mark.parametrize("rule", list(RULES))
def test_no_forbidden_import(rule):
    sources, forbidden, module_level = RULES[rule]
    allowed = KNOWN.get(rule, {})
    found = [v for v in violations(sources, forbidden, module_level) if v.split(":")[0] not in allowed]
    assert not found, f"{rule}:\n" + "\n".join(found)


def test_parity_uses_no_private_function_of_training():
    found = violations(files_of("parity"), (), private_of=("edgecxr.training",))
    assert not found, found


def test_the_contract_catches_a_forbidden_import(tmp_path):
    """The checker itself: a module-level torch import is found, a lazy one inside a function is not."""
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nimport torch\n\n\ndef later():\n    import transformers\n")
    _, forbidden, module_level = RULES[next(iter(RULES))]
    assert violations([probe], forbidden, module_level) == ["probe.py:2 imports torch"]
    assert len(violations([probe], forbidden, module_level_only=False)) == 2
