"""Named Swin-V2 architectures for training from random initialisation, with no network.

Each preset fixes the architecture and may carry its own training recipe (a from-scratch
model wants a far higher learning rate than the seed study's fine-tuning). Plain data, so
`edgecxr train --help` can list them without importing transformers.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # The seed study's architecture, microsoft/swinv2-tiny-patch4-window8-256, ~27.6 M parameters.
    "swinv2-tiny-256": {
        "model": {"image_size": 256, "patch_size": 4, "embed_dim": 96, "depths": [2, 2, 6, 2],
                  "num_heads": [3, 6, 12, 24], "window_size": 8, "drop_path_rate": 0.2},
        "recipe": {"lr": 3e-4, "weight_decay": 0.05, "epochs": 60, "label_smoothing": 0.1},
        "about": "the paper's architecture (embed 96, depths 2-2-6-2, window 8, 256 px)",
    },
    # A reduced Swin-V2 that trains on two CPU cores in minutes per epoch.
    "swinv2-micro-128": {
        "model": {"image_size": 128, "patch_size": 4, "embed_dim": 32, "depths": [2, 2, 2, 2],
                  "num_heads": [1, 2, 4, 8], "window_size": 8, "drop_path_rate": 0.1},
        "recipe": {"lr": 3e-4, "weight_decay": 0.05, "epochs": 30, "label_smoothing": 0.1},
        "about": "reduced for CPUs (embed 32, depths 2-2-2-2, window 8, 128 px)",
    },
    # The micro model at 160 px (issue 21: does resolution rank better?). Window 5, since 160 px
    # gives 40/20/10/5 tokens per stage; ~1.4x the training step time of the 128 px model.
    "swinv2-micro-160": {
        "model": {"image_size": 160, "patch_size": 4, "embed_dim": 32, "depths": [2, 2, 2, 2],
                  "num_heads": [1, 2, 4, 8], "window_size": 5, "drop_path_rate": 0.1},
        "recipe": {"lr": 3e-4, "weight_decay": 0.05, "epochs": 30, "label_smoothing": 0.1},
        "about": "the micro model at 160 px (window 5)",
    },
    # For tests and debugging only: seconds per epoch on a small sample.
    "swinv2-nano-64": {
        "model": {"image_size": 64, "patch_size": 4, "embed_dim": 16, "depths": [1, 1],
                  "num_heads": [1, 2], "window_size": 4, "drop_path_rate": 0.0},
        "recipe": {"lr": 1e-3, "weight_decay": 0.05},
        "about": "tiny, for tests (embed 16, two stages, 64 px)",
    },
}


def preset_names() -> list[str]:
    return list(PRESETS)
