"""`edgecxr service install --dicom-listen`: the second unit, running the DICOM listener beside the watcher.

The listener's unit may bind only its port and talk only to the allowed networks; it writes
only the inbox. The watch unit keeps its own sandbox (no network) and reads the inbox's
subfolders (watch's default), since the listener files instances by study.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgecxr.core.errors import EdgecxrError
from edgecxr.service.steps import MakeDir, Step, WriteFile

LISTEN_UNIT = "edgecxr-dicom-listen.service"
PRIVILEGED_PORTS = 1024


@dataclass
class ListenerConfig:
    inbox: Path
    executable: Path
    user: str = "edgecxr"
    port: int = 11112
    allow_ip: tuple[str, ...] = ()  # empty: any peer may connect (the listener's own checks still apply)
    options: str = ""  # more `edgecxr dicom-listen` options: AE titles, TLS, limits


def check_listener(config: ListenerConfig) -> None:
    """Fail at install, not at the first association, on options the unit cannot express."""
    from edgecxr.dicomnet.access import AccessPolicy, require_ae_choice

    if not 1 <= config.port <= 65535:
        raise EdgecxrError(f"--dicom-port {config.port} is not a TCP port", fix="use 1-65535, e.g. 11112 or 104")
    AccessPolicy.parse([], list(config.allow_ip), option="--dicom-allow-ip")
    words = shlex.split(config.options)
    for word in words:
        if word in ("--port", "--allow-ip", "--inbox") or word.startswith(("--port=", "--allow-ip=", "--inbox=")):
            raise EdgecxrError(f"--dicom-options may not set {word.split('=')[0]}: the unit's sandbox is built from it",
                               fix="use --dicom-port, --dicom-allow-ip and --inbox instead")
    ae_titles = [w.split("=", 1)[1] if "=" in w else (words[i + 1] if i + 1 < len(words) else "")
                 for i, w in enumerate(words) if w == "--allow-ae" or w.startswith("--allow-ae=")]
    try:  # the unit would otherwise fail at every start, and restart, with this message in the journal
        require_ae_choice([t for t in ae_titles if t], "--allow-any-ae" in words)
    except EdgecxrError as exc:
        raise EdgecxrError(f"--dicom-options: {exc.cause}", fix=f"{exc.fix}, inside --dicom-options") from exc


def render_listener_unit(config: ListenerConfig) -> str:
    from edgecxr.service.install import exec_words

    check_listener(config)
    template = resources.files("edgecxr").joinpath(f"service/templates/{LISTEN_UNIT}").read_text()
    if config.port < PRIVILEGED_PORTS:  # e.g. 104, DICOM's registered port
        capabilities = ("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"
                        "PrivateUsers=no")
    else:
        capabilities = "CapabilityBoundingSet=\nAmbientCapabilities=\nPrivateUsers=yes"
    return template.format(
        user=config.user, executable=config.executable, port=config.port, inbox=exec_words([str(config.inbox)]),
        allow_ip_option=f" --allow-ip {','.join(config.allow_ip)}" if config.allow_ip else "",
        ip_address_allow=" ".join(("localhost", *config.allow_ip)) if config.allow_ip else "any",
        capabilities=capabilities,
    )


def render_listener_env(config: ListenerConfig) -> str:
    from edgecxr.service.install import env_value, exec_words

    options = env_value(exec_words(shlex.split(config.options)))
    return (
        "# Settings of edgecxr-dicom-listen.service (see `edgecxr dicom-listen --help`); restart it after a change.\n"
        "# The port and --allow-ip are in the unit, with the firewall rules built from them: change them by\n"
        "# running `edgecxr service install --dicom-listen` again.\n"
        f"EDGECXR_INBOX={env_value(str(config.inbox))}\n"
        "# e.g. --ae-title EDGECXR --allow-ae CR01,DX02 --tls-cert /etc/edgecxr/tls/node.pem "
        "--tls-key /etc/edgecxr/tls/node.key --tls-ca /etc/edgecxr/tls/scanners-ca.pem\n"
        f"EDGECXR_DICOM_OPTIONS={options}\n"
        "EDGECXR_LOG_FORMAT=json\n"
    )


def listener_steps(config: ListenerConfig, root: Path) -> list[Step]:
    unit_path = root / "etc/systemd/system" / LISTEN_UNIT
    env_path = root / "etc/edgecxr/dicom-listen.env"
    return [
        (f"create {config.inbox} owned by {config.user} (the listener writes there)", MakeDir(config.inbox)),
        (f"write {env_path}", WriteFile(env_path, render_listener_env(config))),
        (f"write {unit_path}", WriteFile(unit_path, render_listener_unit(config))),
    ]
