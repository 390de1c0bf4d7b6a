"""Result sinks: what happens to a result after its line is durable in results.jsonl.

The watcher hands every new record to each sink before it archives the input, so a sink can
still read the source file (a DICOM header for an SR, the model input for an explanation map).
A sink must return quickly (queue slow work on its own thread) and must not raise: the watcher
logs a sink's exception and goes on, because a result already recorded is never undone.
Sinks never import an engine; the explanation sink gets its Runner from the caller.
A sink may also have a `status()` returning a small JSON-able dict and a `status_key`: the
watcher then writes that dict into status.json under the key at every heartbeat (the drift
monitor's figures, the PACS sender's counts), where the page and /metrics read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from edgecxr.runtime.prepare import Prepared


class ResultSink(Protocol):
    def accept(self, record: dict, item: Prepared | None, source: Path) -> None:
        """`record` is the line just written; `item` the prepared input (tensor, DICOM meta) or None;
        `source` the input's path in the inbox, still there."""

    def close(self) -> None:
        """Finish or persist queued work; called once when the watcher stops."""
