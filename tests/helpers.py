"""Builders for test inputs: tiny Swin-V2 checkpoints and DICOM files made from real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for path in dst.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


def tiny_swinv2_checkpoint(folder: Path, num_labels: int = 3, image_size: int = 64, embed_dim: int = 16,
                           depths=(1, 1), num_heads=(1, 2)) -> Path:
    """A save_pretrained Swin-V2 folder with another head size, as a 'pretrained' base."""
    import torch
    from transformers import Swinv2Config, Swinv2ForImageClassification
    from transformers.utils import logging

    logging.disable_progress_bar()

    torch.manual_seed(0)
    config = Swinv2Config(image_size=image_size, patch_size=4, embed_dim=embed_dim, depths=list(depths),
                          num_heads=list(num_heads), window_size=4, num_labels=num_labels)
    Swinv2ForImageClassification(config).save_pretrained(folder)
    processor = {"image_processor_type": "ViTImageProcessor",
                 "size": {"height": image_size, "width": image_size},
                 "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder
