"""AdamW parameter groups: which tensors get weight decay, and each one's learning-rate scale.

Layer-wise learning-rate decay is how a masked-image-modelling encoder is fine-tuned
(BEiT, SimMIM): the stem and early blocks, which pretraining taught general image
statistics, move slowest; the last blocks and the new classifier head move at the full
rate. With `layer_decay` 1.0 every group has the full rate, as before the option existed.
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.")
_DOWNSAMPLE = re.compile(r"encoder\.layers\.(\d+)\.downsample\.")


def no_weight_decay(name: str, param) -> bool:
    """Biases, norms and Swin-V2's logit scales and position tables are not decayed."""
    return param.ndim <= 1 or "norm" in name or "logit_scale" in name or "position" in name


def layer_id(name: str, depths: list[int]) -> int:
    """0 for the patch embedding, 1..sum(depths) for the blocks in order, the top for the rest.

    A stage's patch-merging (downsample) layer runs after its last block, so it shares
    that block's id; the final norm and the classifier get sum(depths) + 1.
    """
    if ".embeddings." in f".{name}":
        return 0
    block = _BLOCK.search(name)
    if block:
        stage, index = int(block.group(1)), int(block.group(2))
        return sum(depths[:stage]) + index + 1
    down = _DOWNSAMPLE.search(name)
    if down:
        return sum(depths[:int(down.group(1)) + 1])
    return sum(depths) + 1


def param_groups(model, weight_decay: float, lr: float, layer_decay: float = 1.0,
                 depths: list[int] | None = None) -> list[dict]:
    """Groups keyed by (layer, decayed?), each with its own lr = lr × layer_decay^(top − layer).

    Decayed before undecayed within a layer: the order checkpoints made before layer decay
    existed were saved with, so they still resume.
    """
    top = sum(depths) + 1 if depths else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, depths) if depths and layer_decay != 1.0 else top
        decayed = not no_weight_decay(name, param)
        group = groups.setdefault((layer, decayed), {
            "params": [], "weight_decay": weight_decay if decayed else 0.0,
            "lr": lr * layer_decay ** (top - layer), "layer": layer})
        group["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]
