"""The on-device runtime imports and its CLI runs with torch and transformers absent.

Like Polygraphy's bare-environment test: a subprocess whose import system refuses the
workstation-only libraries imports every runtime module and runs the CLI's help.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import edgecxr

BLOCKED = ("torch", "transformers", "accelerate", "torchvision", "safetensors")
WORKSTATION_ONLY = ("edgecxr.training", "edgecxr.exporters")

BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError('blocked in the bare-runtime test: ' + name)
sys.meta_path.insert(0, Block())
"""


def runtime_modules() -> list[str]:
    root = Path(edgecxr.__file__).parent
    names = []
    for info in pkgutil.walk_packages([str(root)], prefix="edgecxr."):
        if not info.name.startswith(WORKSTATION_ONLY) and not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def run_bare(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True,
                          timeout=120)


def test_blocker_really_blocks():
    result = run_bare("import torch")
    assert result.returncode != 0 and "blocked in the bare-runtime test" in result.stderr


def test_every_runtime_module_imports_without_torch():
    modules = runtime_modules()
    assert "edgecxr.cli.app" in modules and "edgecxr.core.data.decode" in modules
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})))")
    result = run_bare(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_cli_help_and_info_without_torch():
    code = ("from typer.testing import CliRunner\n"
            "from edgecxr.cli.app import app\n"
            "r = CliRunner()\n"
            "for args in (['--help'], ['train', '--help'], ['evaluate', '--help'], ['info'], ['--version']):\n"
            "    res = r.invoke(app, args)\n"
            "    assert res.exit_code == 0, (args, res.output)\n"
            "print('ok')\n")
    result = run_bare(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_train_without_torch_says_which_extra(tmp_path):
    code = ("from typer.testing import CliRunner\n"
            "from edgecxr.cli.app import app\n"
            f"args = ['train', '{tmp_path}', '--out', '{tmp_path}/o', '--arch', 'swinv2-nano-64']\n"
            "res = CliRunner().invoke(app, args)\n"
            "print(res.exit_code); print(res.output)\n")
    result = run_bare(code)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "2"
    assert "edgecxr[train]" in result.stdout
