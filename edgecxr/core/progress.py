"""What long jobs (training, export) tell the outside world; this base says nothing.

Library callers and tests get silence; the CLI subclasses it to draw progress with rich.
"""

from __future__ import annotations

from collections.abc import Callable


class Reporter:
    def log(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def task(self, description: str, total: int) -> Callable[..., None]:
        """Start a counted task; returns `advance(n=1)`."""
        return lambda n=1: None

    # training only
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, loss: float, acc: float, images_per_s: float) -> None:
        pass

    def epoch_end(self, row: dict) -> None:
        pass
