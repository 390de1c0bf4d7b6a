"""Every `edgecxr ...` command shown in README and docs exists, with those options; the CLI reference is current."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from edgecxr.cli.app import app

REPO = Path(__file__).resolve().parent.parent
DOCS = [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md", *sorted((REPO / "deploy").rglob("*.md"))]
GENERATED = REPO / "docs" / "cli.md"
STOP = {"|", "||", "&&", ";", "#", ">", ">>", "2>", "2>&1", "&"}


def shown_commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        if path == GENERATED:
            continue
        text = path.read_text()
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if _is_edgecxr_command(line):
                    found.append((path.name, line))
        for span in re.findall(r"`([^`\n]*)`", re.sub(r"```.*?```", "", text, flags=re.S)):
            if span.startswith("edgecxr "):
                found.append((path.name, span))
    return found


def _is_edgecxr_command(line: str) -> bool:
    """The line runs edgecxr itself (after an optional prompt, sudo or variable assignments)."""
    words = line.strip().split()
    while words and (words[0] in ("$", "sudo") or re.match(r"^[A-Z_]+=", words[0])):
        words = words[1:]
    return bool(words) and (words[0] == "edgecxr" or words[0].endswith("/edgecxr"))


def _tokens(line: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        words = line.split()
    start = next(i for i, w in enumerate(words) if w == "edgecxr" or w.endswith("/edgecxr"))
    out = []
    for w in words[start + 1:]:
        if w in STOP:
            break
        w = w.strip("[]").rstrip(",")
        if w and w not in ("...", "…"):
            out.append(w)
    return out


def _options(command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def check(line: str) -> list[str]:
    command = typer.main.get_command(app)  # typer vendors click: duck-type groups by .commands
    problems = []
    for token in _tokens(line):
        if token.startswith("-") and " " not in token:  # a quoted "--a b" is a value (e.g. --dicom-options)
            name = token.split("=")[0]
            if name not in _options(command):
                problems.append(f"{command.name} has no option {name}")
        elif hasattr(command, "commands") and token in command.commands:
            command = command.commands[token]
        elif hasattr(command, "commands") and not token.isupper() and command.name == "edgecxr":
            problems.append(f"no command {token!r}")
            break
    if not problems and hasattr(command, "commands") and command.name == "edgecxr" and not any(
            t.startswith("--") for t in _tokens(line)):
        problems.append("no subcommand")
    return problems


def test_docs_show_commands():
    assert len(shown_commands()) > 40


@pytest.mark.parametrize(("where", "line"), shown_commands())
def test_every_shown_command_exists(where, line):
    assert check(line) == [], f"{where}: {line}"


def test_checker_catches_mistakes():
    assert check("edgecxr watch INBOX --no-such-flag") == ["watch has no option --no-such-flag"]
    assert check("edgecxr deploy-now X") == ["no command 'deploy-now'"]
    assert check("sudo /opt/edgecxr/venv/bin/edgecxr service install --inbox /x --dry-run") == []
    assert check('edgecxr service install --inbox /x --dicom-listen --dicom-options "--allow-ae A" --bad') == [
        "install has no option --bad"]


def test_cli_reference_is_current(tmp_path):
    out = tmp_path / "cli.md"
    subprocess.run([sys.executable, "-m", "typer", "edgecxr.cli.app", "utils", "docs", "--name", "edgecxr",
                    "--output", str(out)], check=True, capture_output=True)
    assert out.read_text() == GENERATED.read_text(), "docs/cli.md is stale: run `make cli-docs`"
