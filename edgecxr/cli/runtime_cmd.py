"""`edgecxr watch` and `edgecxr status`: the device runtime's long-running command and its check
(`edgecxr classify` is in classify_cmd.py)."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import (
    FROM_BUNDLE,
    AllowUnqualifiedOpt,
    BackendOpt,
    BodyPartOpt,
    BundleOpt,
    HintOpt,
    LogFormatOpt,
    ModalityOpt,
    OpenVinoDeviceOpt,
    PopulationAgeOpt,
    PopulationTextOpt,
    PrecisionOpt,
    QualificationDirOpt,
    RefuseAgeOutsideOpt,
    ThreadsOpt,
    ViewOpt,
)
from edgecxr.cli.send_opts import (
    AuditLogOpt,
    AuditSyslogCaOpt,
    AuditSyslogOpt,
    SendAllowHttpOpt,
    SendCommitListenOpt,
    SendCommitOpt,
    SendCommitWaitOpt,
    SendEchoIntervalOpt,
    SendKeepOpt,
    SendTlsCaOpt,
    SendTlsCertOpt,
    SendTlsKeyOpt,
    commit_options,
    open_audit,
    send_tls,
    with_audit,
    with_health,
)
from edgecxr.cli.watch_parts import (
    _announce,
    _drift_monitor,
    _explain_sink,
    _run_until_signalled,
    _send_sinks,
    _start_status_page,
)
from edgecxr.core.data.decode import DEFAULT_MAX_PIXELS

TABLE_ROWS = 50  # `watch --once` shows its last results in a table; every one of them is in results.jsonl


def _open_classifier(bundle, backend, precision, device, threads, hint="LATENCY", allow_unqualified=False,
                     qualification_dir=None, cache=None):
    from edgecxr.core.errors import EdgecxrError

    if hint.upper() not in ("LATENCY", "THROUGHPUT"):
        raise EdgecxrError(f"--performance-hint {hint!r} is not LATENCY or THROUGHPUT", fix="use LATENCY or THROUGHPUT")
    from edgecxr.backends import RunnerOptions
    from edgecxr.core.bundle import load_bundle
    from edgecxr.runtime.classifier import Classifier
    from edgecxr.runtime.default_bundle import resolve_bundle
    from edgecxr.runtime.selection import choose

    loaded = load_bundle(resolve_bundle(bundle))
    choice = choose(loaded, backend, precision, allow_unqualified=allow_unqualified,
                    qualification_dir=qualification_dir)
    options = RunnerOptions(threads=threads, device=device, performance_hint=hint,
                            cache_dir=None if cache is None or str(cache) == "none" else str(cache))
    return Classifier(loaded, choice, options)


def watch(
    inbox: Annotated[Path, typer.Argument(help="The folder the scanner (or its export node) writes to.")],
    bundle: BundleOpt = None,
    out: Annotated[Path | None, typer.Option(help="Results folder: results.jsonl and status.json (default: INBOX/.edgecxr).")] = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    openvino_device: OpenVinoDeviceOpt = "CPU",
    threads: ThreadsOpt = None,
    performance_hint: HintOpt = "LATENCY",
    allow_unqualified: AllowUnqualifiedOpt = False,
    qualification_dir: QualificationDirOpt = None,
    model_cache: Annotated[Path | None, typer.Option(help="OpenVINO compiled-model cache, so a restart compiles in a fraction of the time (default: OUT/model-cache; 'none' turns it off).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Process the backlog and exit (cron, tests, batch jobs).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Also read subfolders (export nodes write study/series/IMG0001).")] = True,
    settle_seconds: Annotated[float, typer.Option(help="A file is read once its size and mtime are unchanged this long.")] = 2.0,
    rescan_seconds: Annotated[float, typer.Option(help="Full rescan interval, for shares where events are missed.")] = 10.0,
    batch_size: Annotated[int, typer.Option(help="Largest micro-batch for a burst of files.")] = 8,
    archive: Annotated[Path | None, typer.Option(help="Move classified inputs here.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Move refused inputs here.")] = None,
    poll: Annotated[bool, typer.Option("--poll", help="Poll instead of file-system events (network shares).")] = False,
    modality: ModalityOpt = FROM_BUNDLE,
    view: ViewOpt = None,
    body_part: BodyPartOpt = None,
    population_age: PopulationAgeOpt = None,
    population_text: PopulationTextOpt = None,
    refuse_age_outside: RefuseAgeOutsideOpt = None,
    max_pixels: Annotated[int, typer.Option(help="Refuse images with more pixels (decompression bombs).")] = DEFAULT_MAX_PIXELS,
    max_bytes: Annotated[int, typer.Option(help="Refuse files larger than this.")] = 512 * 1024 * 1024,
    quiet: Annotated[bool, typer.Option("--quiet", help="No table of results, only the summary.")] = False,
    log_format: LogFormatOpt = "text",
    send_sr: Annotated[list[str] | None, typer.Option(metavar="AET@HOST:PORT|URL", help="Send each DICOM input's result as a DICOM SR to this PACS (repeat for several): by C-STORE to AET@HOST:PORT, or by DICOMweb STOW-RS to a base URL such as https://pacs:8042/dicom-web; queued durably in OUT/outbox.")] = None,
    send_sc: Annotated[bool, typer.Option("--send-sc", help="With --send-sr: also send a Secondary Capture with the result burned in (not for diagnostic use).")] = False,
    send_ae_title: Annotated[str, typer.Option(help="Our (calling) AE title when sending results.")] = "EDGECXR",
    send_retry_max: Annotated[float, typer.Option(help="Longest wait, in seconds, between tries to an unreachable PACS.")] = 300.0,
    send_give_up: Annotated[tuple[int, float], typer.Option(metavar="ATTEMPTS HOURS", help="Move an object to outbox failed/ after this many 'try again' answers from the PACS, or once it is this many hours old (`edgecxr outbox retry` queues it again).")] = (20, 168.0),
    send_echo_interval: SendEchoIntervalOpt = 60.0,
    send_tls_cert: SendTlsCertOpt = None,
    send_tls_key: SendTlsKeyOpt = None,
    send_tls_ca: SendTlsCaOpt = None,
    send_commit: SendCommitOpt = False,
    send_commit_listen: SendCommitListenOpt = "11113",
    send_commit_wait: SendCommitWaitOpt = 60.0,
    send_keep: SendKeepOpt = (90.0, 50.0),
    send_allow_http: SendAllowHttpOpt = False,
    audit_log: AuditLogOpt = None,
    audit_syslog: AuditSyslogOpt = None,
    audit_syslog_ca: AuditSyslogCaOpt = None,
    http: Annotated[str | None, typer.Option(help="Serve a read-only status page at PORT or HOST:PORT, e.g. 127.0.0.1:8080 (a bare port binds loopback; any other address logs a warning).")] = None,
    http_allow_host: Annotated[list[str] | None, typer.Option(metavar="NAME", help="With --http: a further host name the page may be opened by (repeatable); it always answers to its address, localhost, 127.0.0.1 and [::1], and refuses other names (DNS rebinding).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also write an occlusion map per classified image to OUT/maps/<sha256>.png, made on the same engine after the result line.")] = False,
    explain_queue: Annotated[int, typer.Option(help="Images waiting for a map before newer ones go without (logged).")] = 32,
):
    """Watch a scanner's output folder and classify every image that lands there, exactly once."""
    from edgecxr.cli.console import err, logger
    from edgecxr.cli.console import out as console
    from edgecxr.runtime.checks import InboxCheck
    from edgecxr.runtime.prepare import InputLimits
    from edgecxr.runtime.watcher import Watcher, WatchOptions

    InboxCheck(inbox)  # first: OUT (default INBOX/.edgecxr) and the engine's cache in it would create a missing inbox
    out = out or inbox / ".edgecxr"
    say = logger(err, log_format)
    from edgecxr.core.warning_log import set_default_log

    set_default_log(lambda line: say(line, event="warning"))  # third-party warnings, without the values they quote
    cache = model_cache if model_cache is not None else out / "model-cache"
    classifier = _open_classifier(bundle, backend, precision, openvino_device, threads, performance_hint, allow_unqualified,
                                  qualification_dir, cache)
    say(f"edgecxr watch: {inbox} -> {out / 'results.jsonl'}", event="start", inbox=str(inbox), out=str(out))
    use = _announce(classifier, say, _intended_use(classifier, modality, view, body_part, population_age,
                                                   population_text, refuse_age_outside))
    options = WatchOptions(
        inbox=inbox, out=out, recursive=recursive, settle_seconds=settle_seconds, rescan_seconds=rescan_seconds,
        batch_size=batch_size, once=once, poll=poll, archive=archive, quarantine=quarantine,
        limits=InputLimits(max_pixels=max_pixels, max_bytes=max_bytes, modalities=use.accepted_modalities(),
                           intended_use=use))
    new: deque[dict] = deque(maxlen=TABLE_ROWS)  # the table's last rows: a year's backlog is never held whole
    count = [0]

    def on_result(record: dict) -> None:
        count[0] += 1
        if once:
            new.append(record)  # a table at the end; a long-running watch logs each line instead
        elif not quiet:
            say(_one_line(record), event="result", path=record["path"], status=record["status"],
                label=record.get("label"), code=record.get("error", {}).get("code"))

    log = lambda m: say(m, event="log")  # noqa: E731
    audit = open_audit(audit_log, send_ae_title, audit_syslog, audit_syslog_ca)
    sinks = _send_sinks(send_sr or [], send_sc, send_ae_title, (send_retry_max, *send_give_up), out, inbox,
                        classifier, log, once,
                        commit=commit_options(send_commit, send_commit_listen, send_commit_wait, send_ae_title,
                                              send_sr), keep=send_keep,
                        tls=send_tls(send_sr, send_tls_cert, send_tls_key, send_tls_ca), audit=audit,
                        allow_http=send_allow_http)
    sinks = with_audit(with_health(sinks, send_echo_interval, log), audit, send_ae_title)
    allow = tuple(http_allow_host or ())
    server, page_sinks = _start_status_page(http, out, classifier, say, allow) if http is not None else (None, [])
    explainer = _explain_sink(classifier, out, openvino_device, explain_queue, say) if explain else None
    drift = _drift_monitor(classifier, out)
    watcher = Watcher(classifier, options, log=log, on_result=on_result,
                      sinks=sinks + page_sinks + ([explainer] if explainer else []) + [drift])
    if explainer is not None:
        explainer.busy = lambda: watcher.counters.backlog > 0  # maps wait while a burst is being classified
    try:
        counters = _run_until_signalled(watcher, say)
    finally:
        classifier.close()
        if server is not None:
            server.stop()
    if new and not quiet:
        if count[0] > len(new):
            console.print(f"the last {len(new)} of {count[0]} new results (all are in results.jsonl):")
        _print_results(list(new), console)
    console.print(f"{count[0]} new result(s) this run; {counters.processed} classified, {counters.out_of_scope} not "
                  f"analysed (outside the intended use) and {counters.refused} refused (unreadable) in total "
                  f"-> {out / 'results.jsonl'}")


def _intended_use(classifier, modality, view, body_part, population_age, population_text, refuse_age_outside):
    """The bundle's intended use with this command's overrides (None keeps the bundle's value)."""
    from edgecxr.scope.intended_use import resolve

    return resolve(classifier.bundle.manifest, modalities=modality, views=view, body_parts=body_part,
                   population_age=population_age, population_text=population_text,
                   refuse_age_outside=refuse_age_outside)


def _one_line(r: dict) -> str:
    if r["status"] == "out_of_scope":
        return f"not analysed {r['path']}: {r['gate']['reason']} ({r['gate']['stage']} check)"
    if r["status"] == "duplicate":
        return f"duplicate {r['path']}: judged before as {r['duplicate_of']['path']}"
    if r["status"] != "ok":
        return f"refused {r['path']}: {r['error']['message']}"
    flags = "".join(f"  [{f['reason']}]" for f in r.get("flags", []))
    return f"{r['label']:<10} P({r['positive_class']}) {r['p_positive']:.3f}  {r['path']}{flags}"


def _print_results(records: list[dict], console) -> None:
    from rich.table import Table

    ok = [r for r in records if r["status"] == "ok"]
    positive = ok[0]["positive_class"] if ok else "positive"
    table = Table(title_justify="left", caption=f"rule: {ok[0]['decision']}" if ok else None, caption_justify="left")
    for col in ("file", "result", f"P({positive})", "engine", "ms"):
        table.add_column(col, justify="right" if col in (f"P({positive})", "ms") else "left")
    for r in records:
        if r["status"] == "ok":
            t = r["timings_ms"]
            notes = "".join(f"\n[yellow]note: {f['reason']}[/yellow]" for f in r.get("flags", []))
            table.add_row(r["path"], r["label"] + notes, f"{r['p_positive']:.3f}", f"{r['backend']}/{r['precision']}",
                          f"{t['decode'] + t['preprocess'] + t['inference']:.0f}")
        elif r["status"] == "out_of_scope":
            table.add_row(r["path"], f"[yellow]not analysed: {r['gate']['reason']}[/yellow]", "-", "-", "-")
        elif r["status"] == "duplicate":
            table.add_row(r["path"], f"duplicate of {r['duplicate_of']['path']}", "-", "-", "-")
        else:
            table.add_row(r["path"], f"[red]refused: {r['error']['code']}[/red]", "-", "-", "-")
    console.print(table)


def status(
    out: Annotated[Path, typer.Argument(help="The watcher's results folder (its --out).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print status.json, plus the outbox counts per PACS.")] = False,
):
    """Show a watcher's heartbeat (counts, backlog, last error, engine, uptime) and results pending / sent / failed per PACS."""
    from edgecxr.cli.console import out as console
    from edgecxr.core.errors import EdgecxrError
    from edgecxr.core.results import STATUS, heartbeat_age, is_stale, read_status
    from edgecxr.runtime.lock import lock_holder

    data = read_status(out)
    if data is None:
        raise EdgecxrError(f"no {STATUS}: no watcher has written here (or it is not JSON)", path=out,
                           fix="give the folder passed to `edgecxr watch --out` (default INBOX/.edgecxr)")
    from edgecxr.dicomnet.outbox import summary

    holder = lock_holder(out)
    age = heartbeat_age(data)
    stale = is_stale(data, age)
    if json_out:
        console.print_json(json.dumps({**data, "lock_holder": holder, "outbox": summary(out), "stale": stale}))
        if stale or data.get("state") != "running" or data.get("inbox_error"):
            raise typer.Exit(1)
        return
    state = f"{data['state']}" + (f" [red](no heartbeat for {age:.0f} s: stale, stopped or hung?)[/red]" if stale else "")
    # Only a running watcher with a fresh heartbeat is healthy: a monitoring script checks the exit code alone.
    stopped = data.get("state") != "running"
    if stopped:
        state += f" [red](no heartbeat: the watcher stopped {age:.0f} s ago)[/red]"
    console.print(f"state: {state}; pid {data['pid']}; uptime {data['uptime_s']:.0f} s; inbox {data['inbox']}")
    console.print(f"lock: {f'held by pid {holder}' if holder else 'free (no watcher is running on this folder)'}")
    if data.get("inbox_error"):
        console.print(f"[red]inbox error: {data['inbox_error']}[/red]", highlight=False)
    console.print(f"classified {data['processed']}, refused {data['refused']}, backlog {data['backlog']}, "
                  f"waiting {data['waiting']}, moved {data['moved']}")
    if data.get("damaged_ledger_lines"):
        console.print(f"damaged results.jsonl lines set aside at start: {data['damaged_ledger_lines']}")
    console.print(f"engine: {data['bundle']} {data['backend']}/{data['precision']} ({data['reason']})")
    console.print(f"last error: {data['last_error'] or 'none'}")
    for warning in (data.get("drift") or {}).get("warnings") or []:
        console.print(warning, style="yellow", markup=False, highlight=False)
    _print_outbox(out, console)
    if stale or stopped or data.get("inbox_error"):
        raise typer.Exit(1)


def _print_outbox(out: Path, console) -> None:
    from edgecxr.dicomnet.outbox import summary

    for row in summary(out):
        line = f"PACS {row['destination']}: pending {row['pending']}, sent {row['sent']}, failed {row['failed']}"
        if row.get("committed") or row.get("awaiting_commitment"):
            line += f" (committed {row['committed']}, stored awaiting commitment {row['awaiting_commitment']})"
        if row["queued"]:
            line += f"; {row['queued']} result(s) still being built"
        if row["last_error"]:
            line += f"; last error: {row['last_error']} (next try {row['next_attempt']})"
        console.print(line, markup=False, highlight=False)
