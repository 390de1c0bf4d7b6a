"""The DICOM listener's systemd unit: binds only its port, talks only to the allowed networks, writes only the inbox."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.service.dicom import ListenerConfig, render_listener_env, render_listener_unit
from tests.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
EXE = Path(shutil.which("edgecxr") or "/bin/true")


def _unit(tmp_path, **kw) -> str:
    kw.setdefault("options", "--allow-ae CR01")
    return render_listener_unit(ListenerConfig(inbox=tmp_path / "inbox", executable=EXE, **kw))


def test_listener_unit_opens_only_its_port_to_the_allowed_networks(tmp_path):
    unit = _unit(tmp_path, allow_ip=("10.20.0.0/24", "192.168.1.5"))
    for setting in (f"ReadWritePaths={tmp_path / 'inbox'}\n", "SocketBindAllow=tcp:11112\n", "SocketBindDeny=any\n",
                    "IPAddressDeny=any\n", "IPAddressAllow=localhost 10.20.0.0/24 192.168.1.5\n",
                    "RestrictAddressFamilies=AF_INET AF_INET6\n", "CapabilityBoundingSet=\n", "PrivateUsers=yes\n",
                    "--port 11112 --allow-ip 10.20.0.0/24,192.168.1.5 $EDGECXR_DICOM_OPTIONS"):
        assert setting in unit
    anyone = _unit(tmp_path)
    assert "IPAddressAllow=any\n" in anyone and "--allow-ip" not in anyone
    port_104 = _unit(tmp_path, port=104)  # DICOM's registered port needs the one capability, nothing more
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in port_104 and "SocketBindAllow=tcp:104\n" in port_104


def test_listener_unit_command_line_is_one_the_cli_accepts(tmp_path):
    unit = _unit(tmp_path, allow_ip=("10.0.0.0/8",))
    env = render_listener_env(ListenerConfig(inbox=tmp_path / "inbox", executable=EXE,
                                             options="--allow-ae CR01,DX02 --ae-title NODE1 --max-associations 4"))
    values = dict(line.split("=", 1) for line in env.splitlines() if line and not line.startswith("#"))
    command = re.search(r"^ExecStart=(.*)$", unit, flags=re.M).group(1)
    command = command.replace("${EDGECXR_INBOX}", values["EDGECXR_INBOX"])
    command = command.replace("$EDGECXR_DICOM_OPTIONS", values["EDGECXR_DICOM_OPTIONS"])
    words = shlex.split(command)
    assert words[:2] == [str(EXE), "dicom-listen"]
    click_command = typer.main.get_command(app).commands["dicom-listen"]
    context = click_command.make_context("dicom-listen", words[2:])  # parses and type-checks every option
    assert context.params["allow_ae"] == "CR01,DX02" and context.params["port"] == 11112


@pytest.mark.parametrize("port", [11112, 104])
def test_listener_unit_verifies_and_rates_ok(tmp_path, port):
    require_tool("systemd-analyze")
    path = tmp_path / "edgecxr-dicom-listen.service"
    path.write_text(_unit(tmp_path, port=port, allow_ip=("10.20.0.0/24",)))
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0 and "edgecxr-dicom-listen.service" not in verify.stderr, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)], capture_output=True,
                              text=True, cwd=tmp_path)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout).group(1))
    assert score <= 1.5, security.stdout  # documented: 1.0 OK (11112), 1.3 OK (104); a network service


def test_examples_match_what_install_writes():
    config = ListenerConfig(inbox=Path("/srv/xray/inbox"), executable=Path("/opt/edgecxr/venv/bin/edgecxr"),
                            allow_ip=("10.20.0.0/24",), options="--allow-ae CR01,DX02")
    examples = REPO / "deploy" / "systemd"
    unit = (examples / "edgecxr-dicom-listen.service.example").read_text()
    assert unit.strip() == render_listener_unit(config).strip()
    assert (examples / "dicom-listen.env.example").read_text().strip() == render_listener_env(config).strip()


def test_install_with_dicom_listen_writes_both_units(tmp_path):
    root, inbox = tmp_path / "root", tmp_path / "inbox"  # the listener's inbox is created by the install
    runner = CliRunner()
    base = ["service", "install", "--inbox", str(inbox), "--out", str(tmp_path / "out"), "--root", str(root),
            "--dicom-listen"]
    done = runner.invoke(app, [*base, "--dicom-allow-ip", "10.20.0.0/24", "--dicom-options", "--allow-ae CR01"])
    assert done.exit_code == 0, done.output
    units = root / "etc/systemd/system"
    assert (units / "edgecxr-watch.service").is_file() and (units / "edgecxr-dicom-listen.service").is_file()
    assert "--no-recursive" not in (root / "etc/edgecxr/watch.env").read_text()  # subfolders are read
    assert "PrivateNetwork=yes" in (units / "edgecxr-watch.service").read_text()  # the watcher stays offline
    assert inbox.is_dir() and "--allow-ae CR01" in (root / "etc/edgecxr/dicom-listen.env").read_text()
    for bad, named in ((["--dicom-allow-ip", "10.0.0.300"], "--dicom-allow-ip"),
                       (["--dicom-options", "--port 5"], "--port"), (["--dicom-port", "70000"], "--dicom-port"),
                       (["--options", "--no-recursive"], "--no-recursive")):
        refused = runner.invoke(app, [*base, "--dry-run", *bad])
        assert refused.exit_code == 2 and named in refused.stderr, refused.output
    for options in ("--ae-title NODE1", "--allow-ae CR01 --allow-any-ae"):  # the unit would fail at every start
        refused = runner.invoke(app, [*base, "--dry-run", "--dicom-options", options])
        assert refused.exit_code == 2 and "--allow-ae" in refused.stderr and "--allow-any-ae" in refused.stderr
    assert runner.invoke(app, [*base, "--dry-run", "--dicom-options", "--allow-any-ae"]).exit_code == 0
