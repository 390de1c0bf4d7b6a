"""`edgecxr gate-check`: the intended-use gate measured as the watcher runs it.

Every case file goes through the runtime's own path: `prepare` (read, tags stage, decode,
pixel stage, preprocess) and the chosen engine's outputs into the learned stage, so what is
measured here is exactly what a box refuses. In-scope images that are refused are false
refusals; out-of-scope images that pass are misses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgecxr.backends import RunnerOptions
from edgecxr.core.bundle import Bundle
from edgecxr.runtime.prepare import InputLimits, Prepared, prepare
from edgecxr.scope.gate import Gate

BATCH = 16


def score_cases(bundle: Bundle, artifact, cases: list, options: RunnerOptions | None = None,
                advance: Callable[[int], object] | None = None, gate: Gate | None = None) -> list[dict]:
    """One row per case: the case's fields plus refused, stage, code, reason, score, threshold."""
    from edgecxr.backends import open_runner
    from edgecxr.backends.base import FEATURES

    gate = gate or Gate.from_bundle(bundle)
    if gate.learned is None:
        from edgecxr.core.errors import EdgecxrError

        raise EdgecxrError("this bundle records no learned gate stage, so there is nothing to measure",
                           path=bundle.folder, fix="re-export it with this edgecxr (`edgecxr export`, gate on)")
    use = gate.intended_use
    limits = InputLimits(intended_use=use)
    rows: list[dict] = []
    with open_runner(artifact.backend, artifact.path, options or RunnerOptions()) as runner:
        for start in range(0, len(cases), BATCH):
            chunk = cases[start:start + BATCH]
            items = [prepare(Path(case.path), bundle.spec, limits, gate) for case in chunk]
            ready = [i for i, item in enumerate(items) if item.refusal is None and item.error is None]
            judged: dict[int, tuple] = {}
            if ready:
                outputs = runner.infer_outputs(np.stack([items[i].tensor for i in ready]))  # type: ignore[misc]
                judged = dict(zip(ready, gate.judge(outputs.get(FEATURES), len(ready))))
            rows += [_row(case, item, judged.get(i), gate.threshold)
                     for i, (case, item) in enumerate(zip(chunk, items))]
            if advance is not None:
                advance(len(chunk))
    return rows


def _row(case, item: Prepared, judged: tuple | None, threshold: float | None) -> dict:
    row = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(case).items()}
    row["threshold"] = threshold
    if item.refusal is not None:  # tags or pixels: before the engine
        r = item.refusal
        return {**row, "refused": True, "stage": r.stage, "code": r.code, "reason": r.reason, "score": None}
    if item.error is not None:  # unreadable: never answered either, but not the gate's doing
        return {**row, "refused": True, "stage": "decode", "code": item.error.code, "reason": item.error.cause,
                "score": None}
    score, refusal = judged if judged is not None else (None, None)
    if refusal is not None:
        return {**row, "refused": True, "stage": "learned", "code": refusal.code, "reason": refusal.reason,
                "score": score}
    return {**row, "refused": False, "stage": None, "code": None, "reason": None, "score": score,
            "flags": [f.code for f in item.flags]}
