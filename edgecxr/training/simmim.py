"""SimMIM pieces: the random patch mask, the masked-image model, and handing its encoder on.

SimMIM (Xie et al., 2022) masks square patches of the input and regresses their raw pixels
from the rest; it is how Swin-V2 itself was pretrained, and it needs no labels, so the
training images of a hospital that cannot download ImageNet weights are enough.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.core.errors import EdgecxrError
from edgecxr.training.presets import PRESETS


def check_mask_geometry(image_size: int, patch_size: int, mask_patch_size: int) -> None:
    if mask_patch_size % patch_size or image_size % mask_patch_size:
        raise EdgecxrError(
            f"--mask-patch-size {mask_patch_size} must be a multiple of the model's patch size "
            f"{patch_size} and divide the image size {image_size}",
            fix=f"use e.g. --mask-patch-size {max(patch_size, image_size // 4)}")


def random_mask(rng: np.random.Generator, image_size: int, patch_size: int,
                mask_patch_size: int, ratio: float) -> np.ndarray:
    """A flat bool mask over the model's patches: `ratio` of the mask-size squares set.

    The model's `bool_masked_pos` is one flag per embedding patch; SimMIM masks larger
    squares, so each chosen square sets a block of (mask/patch)^2 embedding patches.
    """
    side = image_size // mask_patch_size
    chosen = np.zeros(side * side, dtype=bool)
    chosen[rng.permutation(side * side)[:int(np.ceil(ratio * side * side))]] = True
    scale = mask_patch_size // patch_size
    grid = chosen.reshape(side, side).repeat(scale, axis=0).repeat(scale, axis=1)
    return grid.reshape(-1)


def build_masked_model(arch: str):
    """Swinv2ForMaskedImageModeling for a preset; the decoder upsamples by the total stride."""
    from edgecxr.training.model import _transformers

    tf = _transformers()
    preset = PRESETS[arch]["model"]
    stride = preset["patch_size"] * 2 ** (len(preset["depths"]) - 1)
    config = tf.Swinv2Config(num_channels=3, encoder_stride=stride, **preset)
    return tf.Swinv2ForMaskedImageModeling(config)


def load_encoder(model, init: str | Path) -> int:
    """Copy a pretrained encoder (`swinv2.*`) into a classifier; returns tensors copied.

    Every encoder tensor of the classifier must be found with the same shape, so a
    checkpoint of another architecture is refused instead of half-loaded.
    """
    from safetensors.torch import load_file

    folder = Path(init)
    if (folder / "model" / "model.safetensors").is_file():  # the RUN folder was given
        folder = folder / "model"
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EdgecxrError("no model.safetensors: not a pretraining checkpoint", path=folder,
                           fix="give RUN/model written by edgecxr pretrain")
    saved = load_file(str(weights))
    own = {k: v for k, v in model.state_dict().items() if k.startswith("swinv2.")}
    missing = sorted(k for k in own if k not in saved)
    wrong = sorted(k for k in own if k in saved and saved[k].shape != own[k].shape)
    if missing or wrong:
        raise EdgecxrError(
            f"the pretrained encoder does not fit this --arch ({len(missing)} tensors missing, "
            f"{len(wrong)} of another shape, e.g. {(missing + wrong)[0]})", path=folder,
            fix="fine-tune with the --arch the checkpoint was pretrained with (see its "
                "pretrain.json)")
    model.load_state_dict({k: saved[k] for k in own}, strict=False)
    return len(own)
