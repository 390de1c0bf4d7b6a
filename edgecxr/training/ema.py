"""An exponential moving average of the weights, validated and saved in place of the raw ones.

On a few thousand images the raw weights at the end of an epoch are one noisy sample of
where the optimizer is wandering; their running average generalises better and makes the
per-epoch validation curve (and so the checkpoint choice) less jumpy. The average has a
warm-up (timm's and Polyak's): early on, when the weights move fast, it follows them
closely instead of remembering the random start.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """Averaged copy of a model; `state_dict`/`load_state_dict` let accelerate checkpoint it."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = live[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(value.to(avg.dtype), alpha=1 - d)
            else:
                avg.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.module.load_state_dict(state["module"])
