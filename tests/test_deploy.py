"""Deployment files: the systemd unit verifies and stays sandboxed; the container recipes pass lint rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.service.install import ServiceConfig, render_env, render_unit
from tests.tools import require_module, require_tool

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


def _config(tmp_path, **kw):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return ServiceConfig(inbox=inbox, out=tmp_path / "out", executable=Path(shutil.which("edgecxr") or "/bin/true"),
                         **kw)


def test_unit_confines_writes_to_the_output_folder(tmp_path):
    unit = render_unit(_config(tmp_path))
    assert f"ReadWritePaths={tmp_path / 'out'}\n" in unit
    assert f"ReadOnlyPaths={tmp_path / 'inbox'}" in unit
    for setting in ("User=edgecxr", "Restart=on-failure", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=\n"):
        assert setting in unit
    moving = render_unit(_config(tmp_path, archive=tmp_path / "a", quarantine=tmp_path / "q"))
    assert f"ReadWritePaths={tmp_path / 'out'} {tmp_path / 'inbox'} {tmp_path / 'a'} {tmp_path / 'q'}" in moving
    assert "ReadOnlyPaths" not in moving
    nvidia = render_unit(_config(tmp_path, device_class="nvidia"))
    assert "DeviceAllow=char-nvidia-frontend rw" in nvidia and "PrivateDevices=no" in nvidia


def test_systemd_analyze_verify_and_security(tmp_path):
    require_tool("systemd-analyze")
    path = tmp_path / "edgecxr-watch.service"
    path.write_text(render_unit(_config(tmp_path)))
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr
    assert "edgecxr-watch.service" not in verify.stderr, verify.stderr  # no warning about our unit
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)], capture_output=True,
                              text=True, cwd=tmp_path)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout).group(1))
    assert score <= 1.0, security.stdout  # documented: 0.2 SAFE


def test_examples_match_what_install_writes(tmp_path):
    inbox = Path("/srv/xray/inbox")  # rendering needs no real folders
    config = ServiceConfig(inbox=inbox, out=Path("/var/lib/edgecxr"), executable=Path("/opt/edgecxr/venv/bin/edgecxr"),
                           archive=Path("/srv/xray/archive"), quarantine=Path("/srv/xray/quarantine"))
    assert (DEPLOY / "systemd" / "edgecxr-watch.service.example").read_text().strip() == render_unit(config).strip()
    assert (DEPLOY / "systemd" / "watch.env.example").read_text().strip() == render_env(config).strip()


def test_install_dry_run_and_into_a_root(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    runner = CliRunner()
    dry = runner.invoke(app, ["service", "install", "--inbox", str(inbox), "--out", str(tmp_path / "out"),
                              "--dry-run", "--root", str(tmp_path / "root")])
    assert dry.exit_code == 0, dry.output
    assert "would write" in dry.stdout and "ExecStart=" in dry.stdout
    assert not (tmp_path / "root").exists() and not (tmp_path / "out").exists()
    done = runner.invoke(app, ["service", "install", "--inbox", str(inbox), "--out", str(tmp_path / "out"),
                               "--root", str(tmp_path / "root")])
    assert done.exit_code == 0, done.output
    unit = tmp_path / "root" / "etc/systemd/system/edgecxr-watch.service"
    env = tmp_path / "root" / "etc/edgecxr/watch.env"
    assert unit.is_file() and env.is_file() and (tmp_path / "out").is_dir()
    assert f"EDGECXR_INBOX={inbox}" in env.read_text()
    missing = runner.invoke(app, ["service", "install", "--inbox", str(tmp_path / "nope"), "--root",
                                  str(tmp_path / "root2")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    planned = runner.invoke(app, ["service", "install", "--inbox", str(tmp_path / "nope"), "--dry-run"])
    assert planned.exit_code == 0 and "does not exist yet" in planned.stderr  # README's example: a plan, a warning


def test_install_writes_absolute_paths_and_warns_about_what_the_sandbox_hides(tmp_path, monkeypatch):
    (tmp_path / "inbox").mkdir()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["service", "install", "--inbox", "inbox", "--out", "results", "--archive",
                                      "done", "--bundle", "bundles/paper", "--executable", "venv/bin/edgecxr",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    for relative in ("results", "done", "bundles/paper", "venv/bin/edgecxr"):
        assert str(tmp_path / relative) in result.stdout
    assert "--bundle bundles/paper" not in result.stdout and "--archive done" not in result.stdout
    hidden_by = "PrivateTmp=yes" if str(tmp_path).startswith(("/tmp/", "/var/tmp/")) else "ProtectHome=yes"
    if str(tmp_path).startswith(("/tmp/", "/var/tmp/", "/home/", "/root/")):
        assert f"warning: executable {tmp_path / 'venv/bin/edgecxr'}" in result.stderr
        assert hidden_by in result.stderr
    from edgecxr.service.install import ServiceConfig, sandbox_warnings

    config = ServiceConfig(inbox=Path("/srv/in"), out=Path("/var/lib/edgecxr"), executable=Path("/home/u/v/edgecxr"),
                           bundle=Path("/tmp/b"))
    warnings = sandbox_warnings(config)
    assert len(warnings) == 2 and "ProtectHome=yes" in warnings[0] and "PrivateTmp=yes" in warnings[1]
    clean = ServiceConfig(inbox=Path("/srv/in"), out=Path("/var/lib/edgecxr"), executable=Path("/opt/v/edgecxr"))
    assert sandbox_warnings(clean) == []


def test_openvino_gpu_without_its_device_class_is_warned():
    from edgecxr.service.install import ServiceConfig, sandbox_warnings

    def warned(options, device_class="cpu"):
        return sandbox_warnings(ServiceConfig(inbox=Path("/srv/in"), out=Path("/var/lib/edgecxr"),
                                              executable=Path("/opt/v/edgecxr"), device_class=device_class,
                                              extra_options=options))

    assert "add --device-class intel-gpu" in warned("--backend openvino --openvino-device GPU")[0]
    assert "NPU" in warned("--device=NPU", "nvidia")[0]  # the older name, and a class that lets other nodes through
    assert warned("--openvino-device GPU.0", "intel-gpu") == []
    assert warned("--openvino-device CPU") == warned("--backend openvino") == []


# -- container recipes (they are built on the targets; here they are linted) -----------------------

@pytest.mark.parametrize("name", ["intel.Dockerfile", "jetson.Dockerfile"])
def test_container_recipe_lint(name):
    dockerfile = require_module("dockerfile")
    commands = dockerfile.parse_file(str(DEPLOY / "containers" / name))
    kinds = [c.cmd.upper() for c in commands]
    base = commands[0].value[0]
    assert kinds[0] == "FROM" and ":" in base and not base.endswith(":latest"), "pin the base image"
    users = [c.value[0] for c in commands if c.cmd.upper() == "USER"]
    assert users and users[-1] not in ("root", "0"), "the service must not run as root"
    assert "HEALTHCHECK" in kinds
    entry = next(c for c in commands if c.cmd.upper() == "ENTRYPOINT")
    assert entry.json, "ENTRYPOINT in exec form, so SIGTERM reaches edgecxr"
    for c in commands:
        if c.cmd.upper() == "RUN" and "apt-get install" in c.value[0]:
            assert "--no-install-recommends" in c.value[0] and "rm -rf /var/lib/apt/lists" in c.value[0]
        if c.cmd.upper() == "RUN" and "pip install" in c.value[0]:
            assert "--no-cache-dir" in c.value[0]
        if c.cmd.upper() == "COPY":
            for src in c.value[:-1]:
                assert (REPO / src).exists(), f"COPY source {src} is not in the repository"


def test_send_sr_opens_the_network_to_the_pacs_addresses_only(tmp_path):
    plain = render_unit(_config(tmp_path))
    assert "PrivateNetwork=yes" in plain and "RestrictAddressFamilies=AF_UNIX\n" in plain
    assert "IPAddressAllow" not in plain
    inbox = tmp_path / "inbox"
    dry = CliRunner().invoke(app, ["service", "install", "--inbox", str(inbox), "--out", str(tmp_path / "out"),
                                   "--send-sr", "PACS@10.0.0.5:104", "--send-sr", "LOCAL@localhost:4242",
                                   "--dry-run", "--root", str(tmp_path / "root")])
    assert dry.exit_code == 0, dry.output
    allow = re.search(r"IPAddressAllow=(.*)", dry.stdout).group(1).split()
    assert allow[0] == "10.0.0.5" and allow[1] in ("127.0.0.1", "::1") and len(allow) == 2  # names resolved now
    assert "IPAddressDeny=any" in dry.stdout and "PrivateNetwork=no" in dry.stdout
    assert "--send-sr PACS@10.0.0.5:104 --send-sr" in dry.stdout and "LOCAL@localhost" not in dry.stdout
    hidden = CliRunner().invoke(app, ["service", "install", "--inbox", str(inbox), "--dry-run",
                                      "--options", "--send-sr PACS@10.0.0.5:104"])
    assert hidden.exit_code == 2 and "network sandbox" in hidden.stderr
    if shutil.which("systemd-analyze"):
        path = tmp_path / "edgecxr-watch.service"
        path.write_text(render_unit(_config(tmp_path, send_sr=("PACS@10.0.0.5:104",))))
        verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, cwd=tmp_path)
        assert verify.returncode == 0 and "edgecxr-watch.service" not in verify.stderr, verify.stderr
