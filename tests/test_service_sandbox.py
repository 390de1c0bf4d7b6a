"""`service install` and the sandbox: --http on loopback, and watch.env read back by systemd itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.service.dicom import ListenerConfig, render_listener_env, render_listener_unit
from edgecxr.service.install import ServiceConfig, render_env, render_unit
from tests.tools import require_tool

# systemd's user environment generator reads environment.d files with the same parser (env-file.c,
# parse_env_file_internal) as EnvironmentFile=; it runs offline, where no systemd manager does.
# (This container has no running systemd: `systemd-run` cannot reach a bus, and `systemd --user`
# exits at once.) One difference: environment.d also expands $VAR, so the paths here hold no '$'.
ENV_GENERATOR = "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator"


def _config(tmp_path, **kw):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    executable = Path(shutil.which("edgecxr") or "/bin/true")  # systemd-analyze verify wants an executable
    return ServiceConfig(inbox=inbox, out=tmp_path / "out", executable=executable, **kw)


def _verify(unit: str, tmp_path: Path) -> None:
    path = tmp_path / "edgecxr-watch.service"
    path.write_text(unit)
    verify = subprocess.run([require_tool("systemd-analyze"), "verify", str(path)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert verify.returncode == 0 and "edgecxr-watch.service" not in verify.stderr, verify.stderr


def _systemd_reads(env_text: str, tmp_path: Path) -> dict[str, str]:
    """What systemd's own env-file parser makes of `env_text`: the generator prints each value quoted."""
    generator = require_tool(ENV_GENERATOR)
    folder = tmp_path / "xdg" / "environment.d"
    folder.mkdir(parents=True)
    (folder / "50-edgecxr.conf").write_text(env_text)
    done = subprocess.run([generator], capture_output=True, text=True, timeout=60,
                          env={"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:  # systemd's shell_maybe_quote
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key] = value
    return values


def test_http_on_loopback_opens_the_unit_to_this_host_only(tmp_path):
    plain = render_unit(_config(tmp_path))
    assert "PrivateNetwork=yes" in plain and "IPAddressAllow" not in plain
    for options in ("--http 127.0.0.1:8080", "--poll --http=8080", "--http [::1]:8080", "--http localhost:8080"):
        unit = render_unit(_config(tmp_path, extra_options=options))
        assert "PrivateNetwork=no\n" in unit and "PrivateNetwork=yes" not in unit, options
        assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n" in unit
        assert "IPAddressDeny=any\nIPAddressAllow=localhost\n" in unit
    _verify(render_unit(_config(tmp_path, extra_options="--http 127.0.0.1:8080")), tmp_path)
    both = render_unit(_config(tmp_path, extra_options="--http 8080", send_sr=("PACS@10.0.0.5:104",)))
    assert "IPAddressAllow=localhost\n" in both and "IPAddressAllow=10.0.0.5\n" in both
    _verify(both, tmp_path)


def test_http_on_another_address_is_refused_with_the_reason(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for address in ("0.0.0.0:8080", "192.168.1.20:8080", "ward-pc:8080"):
        refused = CliRunner().invoke(app, ["service", "install", "--inbox", str(inbox), "--dry-run",
                                           "--root", str(tmp_path / "root"), "--options", f"--http {address}"])
        assert refused.exit_code == 2, refused.output
        assert "loopback" in refused.stderr and "127.0.0.1" in refused.stderr and "reverse" in refused.stderr
    fine = CliRunner().invoke(app, ["service", "install", "--inbox", str(inbox), "--dry-run",
                                    "--root", str(tmp_path / "root"), "--options", "--http 127.0.0.1:8080"])
    assert fine.exit_code == 0, fine.output
    assert "IPAddressAllow=localhost" in fine.stdout and "PrivateNetwork=no" in fine.stdout


def test_watch_env_paths_survive_systemds_own_parsing(tmp_path):
    inbox = Path("/srv/scanner share\\CR01 ")  # a Windows share name and a trailing space
    out = Path("/var/lib/edge`cxr \"q\" 'x'")
    bundle = Path("/opt/models/v2\\final 'b'")
    config = ServiceConfig(inbox=inbox, out=out, executable=Path("/opt/edgecxr/venv/bin/edgecxr"), bundle=bundle,
                           archive=Path(" /srv/lead"), extra_options="--poll")
    read = _systemd_reads(render_env(config), tmp_path)
    assert read["EDGECXR_INBOX"] == str(inbox)
    assert read["EDGECXR_OUT"] == str(out)
    # $EDGECXR_WATCH_OPTIONS is split by ExecStart= at whitespace, honouring double quotes and \ escapes
    assert read["EDGECXR_WATCH_OPTIONS"] == ('--bundle "/opt/models/v2\\\\final \'b\'" --archive " /srv/lead" --poll')
    plain = _systemd_reads(render_env(_config(tmp_path)), tmp_path / "second")
    assert plain["EDGECXR_INBOX"] == str(tmp_path / "inbox") and plain.get("EDGECXR_WATCH_OPTIONS", "") == ""


def test_listener_env_paths_survive_systemds_own_parsing(tmp_path):
    inbox = Path("/srv/dicom in\\box ")
    config = ListenerConfig(inbox=inbox, executable=Path("/opt/edgecxr/venv/bin/edgecxr"),
                            options="--allow-ae CR01 --tls-cert '/etc/tls dir/node.pem'")
    read = _systemd_reads(render_listener_env(config), tmp_path)
    assert read["EDGECXR_INBOX"] == str(inbox)
    assert read["EDGECXR_DICOM_OPTIONS"] == '--allow-ae CR01 --tls-cert "/etc/tls dir/node.pem"'


def test_unit_path_lists_quote_spaces_and_backslashes_as_systemd_reads_them(tmp_path):
    inbox = tmp_path / "scanner share\\CR01 "
    inbox.mkdir()
    executable = Path(shutil.which("edgecxr") or "/bin/true")
    unit = render_unit(ServiceConfig(inbox=inbox, out=tmp_path / "out", executable=executable))
    # C escapes apply inside quotes in unit files: '\C' (shlex) is no escape systemd knows, "\\C" is a backslash
    assert f'ReadOnlyPaths="{str(inbox).replace(chr(92), chr(92) * 2)}"\n' in unit
    _verify(unit, tmp_path)
    listener = render_listener_unit(ListenerConfig(inbox=inbox, executable=executable, options="--allow-any-ae"))
    assert f'ReadWritePaths="{str(inbox).replace(chr(92), chr(92) * 2)}"\n' in listener
