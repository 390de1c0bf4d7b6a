"""The report of `edgecxr gate-check`: how often the intended-use gate refuses in-scope chest images
(false refusals) and how well it refuses each out-of-scope set (`edgecxr.parity.gate_sets`).

Writes gate-check.json (the summary), gate-check.md (tables and the targets) and gate-check.png
(score distributions and refusal rates). Statistics: Wilson 95% intervals for every rate; AUROC
by the Mann-Whitney U statistic (ties count one half) of each out-of-scope group against the
in-scope images. Two AUROCs per group:
- the gate's: the learned score, with every image refused by the tag or pixel stage (which never
  reaches the engine) ranked above every scored image (+inf), since the gate refuses it whatever
  its learned score would have been;
- the learned score alone, on the images that have one.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from edgecxr.core.metrics import roc_auc
from edgecxr.parity.stats import wilson_interval

OUT_OF_SCOPE_GROUPS = ("synthetic", "photo", "other_modality", "wrong_orientation")
EARLY_STAGES = ("tags", "pixels")  # stages before the engine: no learned score
# The targets: (what, group, measure, comparison, value).
TARGETS = (
    ("false refusals of in-scope images <= 1.0%", "in_scope", "rate", "<=", 0.01),
    ("synthetic frames: 100% refused", "synthetic", "rate", ">=", 1.0),
    ("photographs: >= 95% refused", "photo", "rate", ">=", 0.95),
    ("photographs: AUROC >= 0.99", "photo", "auroc", ">=", 0.99),
    ("other modalities: >= 95% refused", "other_modality", "rate", ">=", 0.95),
    ("other modalities: AUROC >= 0.99", "other_modality", "auroc", ">=", 0.99),
    ("wrongly shown chest images: AUROC >= 0.95", "wrong_orientation", "auroc", ">=", 0.95),
)
GROUP_WORDS = {"in_scope": "in-scope chest images", "synthetic": "synthetic frames", "photo": "photographs",
               "other_modality": "other modalities", "wrong_orientation": "wrongly shown chest images"}


def gate_score(row: dict) -> float | None:
    """The gate's ranking score: +inf for an image refused before the engine, else the learned
    score (None when the image has neither, e.g. it could not be read)."""
    if row.get("refused") and (row.get("stage") in EARLY_STAGES or row.get("score") is None):
        return math.inf
    return None if row.get("score") is None else float(row["score"])


def _rate(rows: list[dict]) -> dict:
    n, refused = len(rows), sum(bool(r["refused"]) for r in rows)
    return {"n": n, "refused": refused, "rate": refused / n if n else None,
            "ci95": list(wilson_interval(refused, n)) if n else None}


def _aurocs(inside: list[dict], outside: list[dict]) -> dict:
    """AUROC of `outside` (positive) against `inside`, on the gate's score and on the learned one."""
    def auroc(key) -> tuple[float | None, int]:
        pos = [s for s in map(key, outside) if s is not None]
        neg = [s for s in map(key, inside) if s is not None]
        return roc_auc([True] * len(pos) + [False] * len(neg), pos + neg), len(pos)

    gate, _ = auroc(gate_score)
    learned, n_learned = auroc(lambda r: None if r.get("score") is None else float(r["score"]))
    return {"auroc": gate, "auroc_learned": learned, "n_learned": n_learned}


def summarise(rows: list[dict]) -> dict:
    """The numbers of a gate-check from its scored rows (one per case)."""
    groups = [g for g in ("in_scope", *OUT_OF_SCOPE_GROUPS) if any(r["group"] == g for r in rows)]
    groups += sorted({r["group"] for r in rows} - set(groups))
    inside = [r for r in rows if r["group"] == "in_scope"]
    thresholds = sorted({float(r["threshold"]) for r in rows if r.get("threshold") is not None})
    summary: dict = {"n": len(rows), "threshold": thresholds[0] if len(thresholds) == 1 else thresholds,
                     "groups": {}, "kinds": {}}
    for group in groups:
        members = [r for r in rows if r["group"] == group]
        entry = {**_rate(members), "by_stage": dict(Counter(str(r.get("stage")) for r in members if r["refused"]))}
        if group != "in_scope":
            entry.update(_aurocs(inside, members))
        summary["groups"][group] = entry
        kinds: dict = {}
        for kind in sorted({str(r["kind"]) for r in members}):
            of_kind = [r for r in members if str(r["kind"]) == kind]
            kinds[kind] = {**_rate(of_kind), **(_aurocs(inside, of_kind) if group != "in_scope" else {})}
        summary["kinds"][group] = kinds
    summary["checks"] = _checks(summary)
    summary["passed"] = all(c["passed"] for c in summary["checks"])
    return summary


def _checks(summary: dict) -> list[dict]:
    checks = []
    for what, group, measure, op, target in TARGETS:
        value = summary["groups"].get(group, {}).get(measure)
        passed = value is not None and (value <= target if op == "<=" else value >= target - 1e-12)
        checks.append({"target": what, "group": group, "measure": measure, "value": value, "passed": passed})
    # The dog thorax: any veterinary image a set holds must be refused, every one.
    for group, kinds in summary["kinds"].items():
        for kind, k in kinds.items():
            if "veterinary" in kind and group != "in_scope":
                checks.append({"target": f"veterinary images ({kind}): 100% refused", "group": group,
                               "kind": kind, "measure": "rate", "value": k["rate"], "passed": k["rate"] == 1.0})
    return checks


def check_targets(summary: dict) -> list[str]:
    """The issue's targets that the summary misses, in words; empty when all are met. A set that
    was not measured (no images) fails its target: it cannot be claimed."""
    failures = []
    for check in _checks(summary):
        if check["passed"]:
            continue
        value = check["value"]
        shown = "not measured (no images)" if value is None else (
            f"{100 * value:.2f}%" if check["measure"] == "rate" else f"{value:.4f}")
        failures.append(f"{check['target']}: {shown}")
    return failures


def _pct(entry: dict) -> str:
    if entry.get("rate") is None:
        return "n/a"
    lo, hi = entry["ci95"]
    return f"{100 * entry['rate']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def markdown(summary: dict) -> str:
    verdict = "all targets met" if summary["passed"] else "targets missed"
    lines = [f"# Intended-use gate check: {verdict}", "", f"{summary['n']} images; learned-score threshold "
             f"{summary['threshold']}.", "", "| set | images | refused | refusal rate (95% CI) | AUROC (gate) | "
             "AUROC (learned score alone) |", "|---|---:|---:|---:|---:|---:|"]
    for group, g in summary["groups"].items():
        lines.append(f"| {GROUP_WORDS.get(group, group)} | {g['n']} | {g['refused']} | {_pct(g)} | "
                     f"{_auc(g.get('auroc'))} | {_auc(g.get('auroc_learned'))} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    for c in summary["checks"]:
        value = "not measured" if c["value"] is None else (
            f"{100 * c['value']:.2f}%" if c["measure"] == "rate" else f"{c['value']:.4f}")
        lines.append(f"| {c['target']} | {value} | {'yes' if c['passed'] else '**no**'} |")
    lines += ["", "## Refusals by stage", "", "| set | tags | pixels | learned | unreadable or other |",
              "|---|---:|---:|---:|---:|"]
    for group, g in summary["groups"].items():
        stages = g["by_stage"]
        other = sum(v for k, v in stages.items() if k not in ("tags", "pixels", "learned"))
        lines.append(f"| {GROUP_WORDS.get(group, group)} | {stages.get('tags', 0)} | {stages.get('pixels', 0)} | "
                     f"{stages.get('learned', 0)} | {other} |")
    lines += ["", "## By kind", "", "| set | kind | images | refusal rate (95% CI) | AUROC (gate) | AUROC (learned) |",
              "|---|---|---:|---:|---:|---:|"]
    for group, kinds in summary["kinds"].items():
        for kind, k in kinds.items():
            lines.append(f"| {GROUP_WORDS.get(group, group)} | {kind} | {k['n']} | {_pct(k)} | "
                         f"{_auc(k.get('auroc'))} | {_auc(k.get('auroc_learned'))} |")
    lines += ["", "AUROC: each set against the in-scope images (Mann-Whitney U, ties count one half). In the gate's "
              "AUROC an image refused by the tag or pixel stage ranks above every scored image (+inf): it never "
              "reaches the engine, and the gate refuses it whatever its learned score would have been. The learned "
              "AUROC uses only the images that have a learned score. Rates: Wilson 95% intervals.",
              "", "![score distributions and refusal rates](gate-check.png)", "", "Made by `edgecxr gate-check`.", ""]
    return "\n".join(lines)


def figure(rows: list[dict], summary: dict, path: Path) -> Path:
    """Learned-score distributions per set with the threshold, and refusal rates per set and kind."""
    from edgecxr.core.plots import _pyplot  # matplotlib, lazily, with its install hint

    plt = _pyplot()
    bars = [(f"{group} / {kind} (n={k['n']})", k["rate"] or 0.0, group) for group, kinds in summary["kinds"].items()
            for kind, k in kinds.items()]
    fig, (dist, rates) = plt.subplots(1, 2, figsize=(13, max(4.0, 0.2 * len(bars) + 1.2)), dpi=110,
                                      gridspec_kw={"width_ratios": [1.1, 1]})
    colours = {g: f"C{i}" for i, g in enumerate(summary["groups"])}
    scores = {g: np.array([r["score"] for r in rows if r["group"] == g and r.get("score") is not None], float)
              for g in summary["groups"]}
    finite = np.concatenate([s[np.isfinite(s)] for s in scores.values()] or [np.zeros(0)])
    log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100  # scores over decades
    if finite.size:
        lo, hi = finite.min(), finite.max()
        edges = np.geomspace(lo, hi, 41) if log else np.linspace(lo, hi if hi > lo else lo + 1, 41)
        for group, values in scores.items():
            if values.size:
                dist.hist(values, bins=edges, histtype="step", density=True, color=colours[group], lw=1.4,
                          label=f"{GROUP_WORDS.get(group, group)} (n={values.size})")
        if log:
            dist.set_xscale("log")
    threshold = summary["threshold"]
    for t in threshold if isinstance(threshold, list) else [threshold]:
        dist.axvline(t, color="black", ls="--", lw=1, label=f"threshold {t:.4g}")
    dist.set_xlabel("learned out-of-scope score (images that reached the engine)")
    dist.set_ylabel("density")
    dist.legend(fontsize=7)
    dist.set_title("learned score per set", fontsize=10)
    y = np.arange(len(bars))[::-1]
    rates.barh(y, [b[1] for b in bars], color=[colours[b[2]] for b in bars])
    rates.set_yticks(y, [b[0] for b in bars], fontsize=6)
    rates.set_xlim(0, 1)
    rates.set_xlabel("share refused")
    rates.set_title("refusal rate per set and kind", fontsize=10)
    fig.suptitle(f"intended-use gate: {'all targets met' if summary['passed'] else 'targets missed'}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(rows: list[dict], out_dir: Path, notes: dict[str, list[str]] | None = None) -> dict:
    """Write gate-check.json, .md and .png into `out_dir`; return the summary. `notes`: what the
    sets left out and why (`GateSets.notes`). JSON and markdown come first, so a machine without
    matplotlib still has them when the figure step says what to install."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    summary["failures"] = check_targets(summary)
    summary["notes"] = notes or {}
    # JSON has no infinity: the summary holds none (AUROCs and rates are finite).
    (out_dir / "gate-check.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    if notes:  # a missing package is said in full; files left out one by one are counted here, listed in the JSON
        said = [f"- {GROUP_WORDS.get(g, g)}: {n}" for g, group_notes in notes.items() for n in group_notes
                if "left out:" not in n]
        counted = [f"- {GROUP_WORDS.get(g, g)}: {k} package files left out (not decodable, not pictures or "
                   "duplicates; listed in gate-check.json)" for g, group_notes in notes.items()
                   if (k := sum("left out:" in n for n in group_notes))]
        text += "\n".join(["", "## Not in the sets", "", *said, *counted, ""])
    (out_dir / "gate-check.md").write_text(text)
    figure(rows, summary, out_dir / "gate-check.png")
    return summary
