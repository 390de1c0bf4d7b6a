"""What `edgecxr watch` composes around the loop: the result sinks (PACS, status page, maps, drift),
the start-up announcement and the signal handling. Each part imports its heavy pieces itself."""

from __future__ import annotations

from pathlib import Path


def _announce(classifier, say, use):
    """Log the engine chosen and why, and the intended use; the gate's tags stage takes this
    command's overrides. Returns the intended use."""
    say(f"bundle {classifier.bundle.name}; engine {classifier.artifact.name} ({classifier.choice.reason})",
        event="engine", bundle=classifier.bundle.name, artifact=classifier.artifact.name,
        reason=classifier.choice.reason)
    if classifier.choice.warning:
        say(f"warning: {classifier.choice.warning}", event="warning", artifact=classifier.artifact.name)
    classifier.gate.intended_use = use
    say(f"intended use: {use.describe()}; {classifier.gate.describe()}", event="intended_use")
    return use


def _run_until_signalled(watcher, say):
    """Run the watcher until it ends (--once) or SIGTERM/SIGINT asks it to finish the batch in flight."""
    import signal
    import threading

    stop = threading.Event()

    def on_signal(signum, _frame):
        say(f"signal {signal.Signals(signum).name}: finishing the batch in flight", event="signal")
        stop.set()
        watcher.wake.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return watcher.run(stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _send_sinks(targets, send_sc, ae_title, retry, out, inbox, classifier, log, once, tls=None, audit=None,
                commit=None, keep=(90.0, 50.0),
                allow_http=False) -> list:
    """The DICOM SR/SC result sink, when --send-sr names a destination. --once gives the outbox 10 s to
    drain before exit; a service stopping (SIGTERM) only 2 s, inside systemd's stop timeout."""
    from edgecxr.core.errors import EdgecxrError

    if not targets:
        if send_sc:
            raise EdgecxrError("--send-sc needs --send-sr AET@HOST:PORT", fix="name the PACS with --send-sr")
        return []
    from edgecxr.dicomnet.destination import parse_destination
    from edgecxr.dicomnet.sender import SendOptions
    from edgecxr.dicomnet.sink import DicomSendSink

    destinations = list(dict.fromkeys(parse_destination(t) for t in targets))
    from edgecxr.dicomnet.stow import check_web_destinations

    check_web_destinations(destinations, tls, allow_http)
    retry_max, attempts, hours = retry
    if retry_max <= 0 or attempts < 1 or hours <= 0:
        raise EdgecxrError(f"--send-retry-max {retry_max} / --send-give-up {attempts} {hours}: not positive",
                           fix="give seconds, e.g. --send-retry-max 300, and e.g. --send-give-up 20 168")
    options = SendOptions(calling_ae_title=parse_destination(f"{ae_title}@x:1").ae_title, max_retry_s=retry_max,
                          first_retry_s=min(2.0, retry_max), tls=tls, max_attempts=attempts,
                          max_age_s=hours * 3600,
                          audit=audit.send_outcomes(ae_title) if audit else None, commit=commit,
                          commit_audit=audit.commit_outcomes(ae_title) if audit else None)
    from edgecxr.dicomnet.retention import Retention

    if keep[0] <= 0 or keep[1] <= 0:
        raise EdgecxrError(f"--send-keep {keep[0]:g} {keep[1]:g}: not positive",
                           fix="give days and megabytes, e.g. --send-keep 90 50")
    return [DicomSendSink(out, inbox, destinations, classifier.bundle.manifest, send_sc=send_sc, options=options,
                          retention=Retention(*keep),
                          log=log, drain_seconds=10.0 if once else 2.0)]


def _drift_monitor(classifier, out: Path):
    """The last results against the bundle's validation figures (status.json's "drift"), seeded from
    results.jsonl so that a restart keeps its window."""
    from edgecxr.core.results import read_results
    from edgecxr.runtime.drift import DriftMonitor

    monitor = DriftMonitor.for_manifest(classifier.bundle.manifest)
    monitor.seed(read_results(out, last=monitor.window))  # read from the end: never a year of lines
    return monitor


def _start_status_page(address: str, out: Path, classifier, say, allow_hosts: tuple[str, ...] = ()):
    """The page's server (its own threads) and the sink that makes its thumbnails."""
    from edgecxr.web.server import StatusServer, parse_address
    from edgecxr.web.thumbs import ThumbnailSink

    host, port, loopback = parse_address(address)
    if not loopback:
        say(f"warning: the status page listens on {host}, not on loopback: anyone who can reach this address "
            "sees results and file names (it is read-only and shows no DICOM patient fields)", event="warning")
    thumbs = ThumbnailSink(out, classifier.bundle.spec)
    server = StatusServer(out, host, port, thumbs=thumbs, allow_hosts=allow_hosts).start()
    say(f"status page: {server.url} (read-only)", event="http", url=server.url)
    return server, [thumbs]


def _explain_sink(classifier, out: Path, device: str, queue_size: int, say):
    """A second session of the chosen engine, on one thread, so maps run beside classification, not in it."""
    from edgecxr.backends import RunnerOptions, open_runner
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.runtime.explain_sink import ExplainSink

    if queue_size < 1:
        raise EdgecxrError(f"--explain-queue {queue_size} leaves no room for a map",
                           fix="give --explain-queue 1 or more")
    runner = open_runner(classifier.artifact.backend, classifier.artifact.path, RunnerOptions(threads=1, device=device))
    return ExplainSink(runner, classifier.bundle.spec, out, classifier.class_names, classifier.engine_label,
                       queue_size=queue_size, log=lambda m: say(m, event="explain"),
                       temperature=classifier.bundle.temperature)
