"""Rules of the suite itself, checked on the test sources with `ast`.

Under CI=true nothing may skip for a missing install (.ci/run installs everything first). That
holds only while every skip goes through tests/tools.py (require_tool/require_module fail under
CI; not_applicable is for what no install fixes). A direct `pytest.skip`, `importorskip` or
`skipif` mark anywhere else would skip silently in CI, so this test refuses it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
HELPER = TESTS / "tools.py"
SKIPS = {"skip", "importorskip", "skipif"}


def direct_skips(source: str, filename: str = "<test>") -> list[tuple[int, str]]:
    """(line, what) for each use of pytest's skip machinery: pytest.skip(...),
    pytest.importorskip(...), @pytest.mark.skip/skipif, and `from pytest import skip`."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Attribute) and node.attr in SKIPS:
            owner = ast.unparse(node.value)
            if owner in ("pytest", "pytest.mark"):
                found.append((node.lineno, f"{owner}.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module in ("pytest", "_pytest.outcomes"):
            found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names if a.name in SKIPS]
    return found


def test_the_checker_sees_each_way_to_skip():
    source = ("import pytest\nfrom pytest import importorskip\npytest.importorskip('x')\n"
              "@pytest.mark.skipif(True, reason='r')\ndef test_a():\n    pytest.skip('r')\n")
    assert sorted(direct_skips(source)) == [(2, "from pytest import importorskip"), (3, "pytest.importorskip"),
                                            (4, "pytest.mark.skipif"), (6, "pytest.skip")]
    assert direct_skips("from tests.tools import require_module\nrequire_module('x')\n") == []


def test_every_skip_goes_through_tests_tools():
    offenders = [f"{path.relative_to(TESTS.parent)}:{line}: {what}"
                 for path in sorted(TESTS.rglob("*.py")) if path != HELPER
                 for line, what in direct_skips(path.read_text(), str(path))]
    assert offenders == [], ("skip through tests/tools.py (require_tool, require_module, not_applicable) "
                             "so that CI=true fails instead of skipping:\n" + "\n".join(offenders))


def test_a_misspelt_mark_is_an_error_and_slow_is_registered(tmp_path):
    """--strict-markers (pyproject): `-m "not slow"` can only trust marks that exist."""
    config = TESTS.parent / "pyproject.toml"
    for mark, expected in (("slow", 0), ("slwo", pytest.ExitCode.INTERRUPTED)):
        test = tmp_path / f"test_{mark}.py"
        test.write_text(f"import pytest\n\n\n@pytest.mark.{mark}\ndef test_marked():\n    pass\n")
        done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(config), "--rootdir", str(tmp_path),
                               "-q", "-p", "no:cacheprovider", str(test)], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        assert done.returncode == expected, done.stdout + done.stderr
    assert "'slwo' not found in `markers` configuration option" in done.stdout + done.stderr
