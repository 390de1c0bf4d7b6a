"""How often does drift watch warn by chance, and how soon after a real change? The figures in
docs/monitoring.md, measured on simulated result streams with the runtime's own DriftMonitor.

    python deploy/bench/drift_simulation.py [--days 200] [--runs 50]

A stream: 1% of images refused by the gate, 38% NORMAL among the rest, gate scores from a
gamma distribution (skewed, like a feature distance); the bundle's validation figures are
measured on 600 images drawn from the same distribution, as export measures them.
"""

from __future__ import annotations

import argparse
import math
import random

from edgecxr.runtime.drift import DriftMonitor

CHANGES = {"refusals 1% -> 8%": ({"refuse": 0.08}, "out_of_scope_rate"),
           "NORMAL 38% -> 55%": ({"normal": 0.55}, "label_share"),
           "score mean +0.6 sd": ({"shift": 0.3}, "score_mean")}


def draw(r: random.Random, refuse: float = 0.01, normal: float = 0.38, shift: float = 0.0) -> dict:
    if r.random() < refuse:
        return {"status": "out_of_scope", "gate": {"code": "unlike_training", "score": 9.0}}
    return {"status": "ok", "label": "NORMAL" if r.random() < normal else "PNEUMONIA",
            "gate": {"score": r.gammavariate(16, 0.125) + shift}}


def validation(r: random.Random, images: int = 600) -> dict:
    ok = [x for x in (draw(r) for _ in range(images)) if x["status"] == "ok"]
    scores = [x["gate"]["score"] for x in ok]
    mean = sum(scores) / len(scores)
    return {"images": images, "refusal_rate": 1 - len(ok) / images,
            "label_shares": {n: sum(x["label"] == n for x in ok) / len(ok) for n in ("NORMAL", "PNEUMONIA")},
            "score_mean": mean, "score_sd": math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))}


def quiet_days(days: int, per_day: int = 300, every: int = 10) -> int:
    warned = 0
    for seed in range(days):
        r = random.Random(seed)
        monitor = DriftMonitor(validation(r))
        day_warned = False
        for i in range(per_day):
            monitor.accept(draw(r))
            if i % every == every - 1:  # a look every `every` images: the figures change only with results
                day_warned |= bool(monitor.status()["warnings"])
        warned += day_warned
    return warned


def delay(change: dict, check: str, runs: int, limit: int = 400) -> list[int]:
    found = []
    for seed in range(runs):
        r = random.Random(1000 + seed)
        monitor = DriftMonitor(validation(r))
        for _ in range(300):
            monitor.accept(draw(r))
        for n in range(1, limit + 1):
            monitor.accept(draw(r, **change))
            if any(c["warning"] and c["name"] == check for c in monitor.status()["checks"]):
                found.append(n)
                break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(f"in-distribution: {quiet_days(args.days)} of {args.days} days of 300 images showed a warning")
    for name, (change, check) in CHANGES.items():
        found = sorted(delay(change, check, args.runs))
        median = found[len(found) // 2] if found else None
        print(f"{name}: warned in {len(found)} of {args.runs} runs within 400 images; median {median}, "
              f"at most {found[-1] if found else None} images after the change")


if __name__ == "__main__":
    main()
