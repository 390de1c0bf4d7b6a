"""`edgecxr service install`: the systemd unit, its environment file, the user and the folders.

The unit runs `edgecxr watch` as a dedicated system user with systemd's sandboxing; only
the output folder (plus the archive/quarantine folders and the inbox, when files are
moved out of it) is writable. Every action is printed; `--dry-run` prints without doing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgecxr.core.errors import EdgecxrError
from edgecxr.service.dicom import LISTEN_UNIT, ListenerConfig, listener_steps
from edgecxr.service.steps import MakeDir, Qualify, Run, Step, WriteFile

UNIT_NAME = "edgecxr-watch.service"


@dataclass
class ServiceConfig:
    inbox: Path
    out: Path
    executable: Path
    archive: Path | None = None
    quarantine: Path | None = None
    bundle: Path | None = None
    user: str = "edgecxr"
    device_class: str = "cpu"  # cpu | nvidia (Jetson / dGPU) | intel-gpu: the device nodes the sandbox lets through
    extra_options: str = ""
    send_sr: tuple[str, ...] = ()  # AET@IP:PORT: the only addresses the unit may reach
    qualify: bool = False  # run parity-check here first, so watch --precision auto trusts INT8 only if it passed
    qualify_data: Path | None = None  # the labelled test folder of the bundle's PyTorch report


QUALIFICATION_DIR = Path("/etc/edgecxr/qualification")  # written by root at install, read by the service


def render_unit(config: ServiceConfig) -> str:
    template = resources.files("edgecxr").joinpath("service/templates/edgecxr-watch.service").read_text()
    writable = [config.out]
    if config.archive or config.quarantine:
        writable += [config.inbox] + [p for p in (config.archive, config.quarantine) if p]
    devices = {
        "cpu": "PrivateDevices=yes",
        "nvidia": "PrivateDevices=no\nDevicePolicy=closed\nDeviceAllow=char-nvidia-frontend rw\n"
                  "DeviceAllow=char-nvidia-uvm rw\nDeviceAllow=char-nvhost rw\nDeviceAllow=char-nvmap rw",
        "intel-gpu": "PrivateDevices=no\nDevicePolicy=closed\nDeviceAllow=char-drm rw\nDeviceAllow=char-accel rw",
    }
    if config.device_class not in devices:
        raise EdgecxrError(f"unknown --device-class {config.device_class!r}", fix="use cpu, nvidia or intel-gpu")
    unit = template.format(
        user=config.user, executable=config.executable,
        # systemd reads these lists with C escapes inside quotes too: shlex's '\x' would lose the backslash
        read_write_paths=exec_words([str(p) for p in writable]),
        read_only_paths=exec_words([str(config.inbox)]) if not (config.archive or config.quarantine) else "",
        devices=devices[config.device_class],
    ).replace("ReadOnlyPaths=\n", "")
    page = status_page_address(config.extra_options)
    if page is not None:
        unit = _open_to_loopback(unit, page)
    return _open_to_pacs(unit, config.send_sr) if config.send_sr else unit


def status_page_address(options: str) -> tuple[str, int] | None:
    """The (host, port) of `--http` in the watch options, or None; a non-loopback address is refused.

    The unit's firewall lets the page answer this host only (IPAddressAllow=localhost): a page bound
    to a LAN address would start and then be unreachable, so it is refused here with the reason.
    """
    from edgecxr.web.server import parse_address

    words = shlex.split(options)
    value = None
    for index, word in enumerate(words):
        if word == "--http":
            if index + 1 == len(words):
                raise EdgecxrError("--http in --options has no address",
                                   fix="write e.g. --options '--http 127.0.0.1:8080'")
            value = words[index + 1]
        elif word.startswith("--http="):
            value = word.split("=", 1)[1]
    if value is None:
        return None
    host, port, loopback = parse_address(value)  # a malformed address is refused there, with the fix
    if not loopback:
        raise EdgecxrError(f"--http {value} in --options: the service's sandbox lets the status page answer this "
                           "computer only (loopback), so a page on another address could not be reached",
                           fix="use --http 127.0.0.1:PORT (or a bare PORT) and, for other computers, a reverse "
                               "proxy with TLS and a login in front of it (see docs/status-page.md)")
    return host, port


def _open_to_loopback(unit: str, page: tuple[str, int]) -> str:
    """--http on loopback: the unit gets a network namespace of its own no more, but talks to this host only."""
    return (unit.replace("# no network: NFS/SMB shares are mounted by the host and read through the file system\n"
                         "PrivateNetwork=yes\n",
                         f"# network: the status page on {page[0]}:{page[1]} answers this host only "
                         "(IPAddressAllow=localhost below)\nPrivateNetwork=no\n")
            .replace("RestrictAddressFamilies=AF_UNIX\n", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n")
            .replace("IPAddressDeny=any\n", "IPAddressDeny=any\nIPAddressAllow=localhost\n"))


def _open_to_pacs(unit: str, destinations: tuple[str, ...]) -> str:
    """--send-sr: the network namespace is kept, but only TCP/IP to the PACS addresses is let through."""
    from edgecxr.dicomnet.destination import parse_destination

    hosts = " ".join(dict.fromkeys(parse_destination(d).host for d in destinations))
    return (unit.replace("# no network: NFS/SMB shares are mounted by the host and read through the file system\n"
                         "PrivateNetwork=yes\n",
                         "# network only to the PACS destinations of --send-sr (IPAddressAllow below)\n"
                         "PrivateNetwork=no\n")
            .replace("RestrictAddressFamilies=AF_UNIX\n", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n")
            .replace("IPAddressDeny=any\n", f"IPAddressDeny=any\nIPAddressAllow={hosts}\n"))


def render_env(config: ServiceConfig) -> str:
    options = []
    if config.bundle:
        options += ["--bundle", str(config.bundle)]
    if config.archive:
        options += ["--archive", str(config.archive)]
    if config.quarantine:
        options += ["--quarantine", str(config.quarantine)]
    if config.extra_options:
        options += shlex.split(config.extra_options)
    for destination in config.send_sr:
        options += ["--send-sr", destination]
    return (
        "# Settings of edgecxr-watch.service (see `edgecxr watch --help`); restart the service after a change.\n"
        f"EDGECXR_INBOX={env_value(str(config.inbox))}\n"
        f"EDGECXR_OUT={env_value(str(config.out))}\n"
        f"EDGECXR_WATCH_OPTIONS={env_value(exec_words(options))}\n"
        "# parity-check verdicts of this box (edgecxr service install --qualify writes them)\n"
        f"EDGECXR_QUALIFICATION_DIR={QUALIFICATION_DIR}\n"
        "# JSON log lines for journald (`journalctl -u edgecxr-watch -o cat | jq`)\n"
        "EDGECXR_LOG_FORMAT=json\n"
        "# Inference threads; uncomment to leave a core to the operating system on small boxes\n"
        "#OMP_NUM_THREADS=1\n"
    )


_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./:,@%+=")


def env_value(text: str) -> str:
    r"""`text` written so systemd's EnvironmentFile= parser reads it back exactly.

    Unquoted, systemd strips leading and trailing spaces and takes `\x` as `x`; inside double
    quotes only \\ \" \` \$ are escapes (env-file.c), so those four are escaped and nothing else is.
    """
    if set(text) <= _PLAIN | {" "} and text == text.strip():  # inner spaces are kept unquoted; the empty value too
        return text
    return '"' + "".join("\\" + c if c in '\\"`$' else c for c in text) + '"'


def exec_words(words: list[str]) -> str:
    r"""Words for `$VAR` in ExecStart=: systemd splits the value at whitespace, honouring quotes and \.

    Not shlex.quote: systemd takes a backslash as an escape inside single quotes too, so
    'C:\x' would lose it. Double quotes with \ and " escaped read back the same in both.
    """
    return " ".join(w if w and set(w) <= _PLAIN else '"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for w in words)


# Where the unit's own sandbox hides a path from the service: ProtectHome=yes and PrivateTmp=yes.
HIDDEN_BY_SANDBOX = {"/root": "ProtectHome=yes", "/home": "ProtectHome=yes", "/run/user": "ProtectHome=yes",
                     "/tmp": "PrivateTmp=yes", "/var/tmp": "PrivateTmp=yes"}


def sandbox_warnings(config: ServiceConfig) -> list[str]:
    """What the service could not reach under the unit's sandboxing (paths it cannot see, a GPU or NPU
    whose device nodes it is not given): it would fail at start."""
    warnings = []
    named = {"executable": config.executable, "--bundle": config.bundle, "--inbox": config.inbox,
             "--out": config.out, "--archive": config.archive, "--quarantine": config.quarantine}
    for option, path in named.items():
        if path is None:
            continue
        for prefix, setting in HIDDEN_BY_SANDBOX.items():
            if str(path) == prefix or str(path).startswith(prefix + "/"):
                warnings.append(f"{option} {path} is under {prefix}, which the unit's {setting} hides from the "
                                "service: move it (e.g. a venv under /opt, data under /srv or /var/lib)")
    device = openvino_device(config.extra_options)
    if device is not None and device.upper().startswith(("GPU", "NPU")) and config.device_class != "intel-gpu":
        warnings.append(f"--options asks OpenVINO for {device}, but --device-class {config.device_class} keeps the "
                        "GPU and NPU device nodes from the service: add --device-class intel-gpu")
    return warnings


def openvino_device(options: str) -> str | None:
    """The OpenVINO device named in the watch options (--openvino-device or its older name --device), or None."""
    words = shlex.split(options)
    value = None
    for index, word in enumerate(words):
        name, equals, rest = word.partition("=")
        if name in ("--openvino-device", "--device"):
            value = rest if equals else (words[index + 1] if index + 1 < len(words) else None)
    return value


def plan(config: ServiceConfig, root: Path = Path("/"), listener: ListenerConfig | None = None, *,
         dry_run: bool = False) -> list[Step]:
    """The install as a list of (description, action) pairs; with `listener`, the DICOM listener's unit too.

    A dry run may describe an inbox that is not mounted yet; a real install may not.
    """
    unit_path = root / "etc/systemd/system" / UNIT_NAME
    env_path = root / "etc/edgecxr/watch.env"
    steps: list[Step] = []
    if listener is None and not config.inbox.is_dir() and not dry_run:
        raise EdgecxrError("the inbox folder does not exist", path=config.inbox,
                           fix="mount or create the scanner's output folder first (--dry-run shows the plan anyway)")
    if root == Path("/") and shutil.which("useradd") and not _user_exists(config.user):
        steps.append((f"create system user {config.user}",
                      Run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", config.user])))
    if listener is not None:
        steps += listener_steps(listener, root)
    for folder in (config.out, config.archive, config.quarantine):
        if folder is not None:
            steps.append((f"create {folder} owned by {config.user}", MakeDir(folder)))
    if config.qualify:
        steps.append(qualify_step(config, root))
    steps.append((f"write {env_path}", WriteFile(env_path, render_env(config))))
    steps.append((f"write {unit_path}", WriteFile(unit_path, render_unit(config))))
    if root == Path("/"):
        steps.append(("reload systemd and enable the service", Run(["systemctl", "daemon-reload"])))
        steps.append(("", Run(["systemctl", "enable", "--now", UNIT_NAME, *([LISTEN_UNIT] if listener else [])])))
    return steps


def qualify_step(config: ServiceConfig, root: Path) -> Step:
    """parity-check on this box, its verdicts kept where the service reads them."""
    folder = root / QUALIFICATION_DIR.relative_to("/")
    command = [str(config.executable), "parity-check", *([str(config.bundle)] if config.bundle else []),
               "--qualification-dir", str(folder), "--out", str(folder / "parity")]
    if config.qualify_data:
        command += ["--data", str(config.qualify_data)]
    return f"qualify the bundle's engines on this box: {shlex.join(command)}", Qualify(command)


def apply(steps: list[Step], user: str, say=lambda line: None) -> None:
    for _, action in steps:
        if isinstance(action, Qualify):
            say(_qualify(action.command))
        elif isinstance(action, Run):
            subprocess.run(action.command, check=True)
        elif isinstance(action, MakeDir):
            action.path.mkdir(parents=True, exist_ok=True)
            if _user_exists(user):
                shutil.chown(action.path, user, user)
        elif isinstance(action, WriteFile):
            action.path.parent.mkdir(parents=True, exist_ok=True)
            action.path.write_text(action.text)


def _qualify(command: list[str]) -> str:
    """A FAIL (exit 1) is a result, not an install error: the service then runs FP32 and says why."""
    import os

    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})
    if done.returncode not in (0, 1):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgecxrError(f"qualification could not run ({last})", fix="pass --qualify-data with the bundle's "
                           "labelled test images, or install without --qualify and run parity-check later")
    return "\n".join(line.strip() for line in done.stdout.splitlines()
                     if line.startswith(("overall:", "watch --precision auto", "verdicts recorded")))


def _user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False
