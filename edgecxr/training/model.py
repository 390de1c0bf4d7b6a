"""Build or load the Swin-V2 classifier, and save it with its preprocessing.

A checkpoint folder (`RUN/model`) is a Hugging Face `save_pretrained` folder plus
edgecxr's `preprocess.json`, so it loads with transformers alone and carries its
preprocessing like a timm model does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.data.fingerprint import sha256_file
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.optional import require
from edgecxr.core.preprocess import IMAGENET_MEAN, IMAGENET_STD, SPEC_FILENAME, PreprocessSpec
from edgecxr.training.presets import PRESETS


@dataclass
class ModelSource:
    kind: str  # "preset" or "pretrained"
    name: str  # preset name, hub id or folder
    spec: PreprocessSpec


def _transformers():
    tf = require("transformers", "training and evaluating Swin-V2")
    tf.utils.logging.set_verbosity_error()  # our own progress bars say what happens
    tf.utils.logging.disable_progress_bar()
    return tf


def _labels(class_names):
    return ({i: n for i, n in enumerate(class_names)}, {n: i for i, n in enumerate(class_names)})


def build_from_preset(arch: str, class_names: list[str]):
    tf = _transformers()
    preset = PRESETS[arch]["model"]
    id2label, label2id = _labels(class_names)
    config = tf.Swinv2Config(num_channels=3, num_labels=len(class_names), id2label=id2label,
                             label2id=label2id, **preset)
    model = tf.Swinv2ForImageClassification(config)
    size = preset["image_size"]
    return model, ModelSource("preset", arch, PreprocessSpec(height=size, width=size))


def load_pretrained(base: str, class_names: list[str]):
    """Load a Swin-V2 checkpoint (folder or hub id) with a new head for `class_names`."""
    tf = _transformers()
    path = Path(base).expanduser()
    local = path.is_dir()
    if not local and (path.exists() or base.startswith((".", "/", "~"))):
        raise EdgecxrError("not a checkpoint folder", path=base,
                           fix="give a folder written by save_pretrained (config.json + weights)")
    if local and not (path / "config.json").is_file():
        raise EdgecxrError("no config.json: not a Hugging Face checkpoint folder", path=path,
                           fix="give a folder written by save_pretrained")
    source = str(path) if local else base
    try:
        config = tf.AutoConfig.from_pretrained(source, local_files_only=True)
    except OSError as exc:
        raise EdgecxrError(
            "the base model's weights are not available locally and there is no network",
            path=base,
            fix=f"on a connected machine run `hf download {base} --local-dir DIR`, copy DIR "
                "here and pass --base DIR",
        ) from exc
    if getattr(config, "model_type", None) != "swinv2":
        raise EdgecxrError(f"model type is {getattr(config, 'model_type', None)!r}, not swinv2",
                           path=base, fix="give a Swin-V2 checkpoint, e.g. "
                                          "microsoft/swinv2-tiny-patch4-window8-256")
    id2label, label2id = _labels(class_names)
    try:
        model = tf.Swinv2ForImageClassification.from_pretrained(
            source, local_files_only=True, num_labels=len(class_names), id2label=id2label,
            label2id=label2id, ignore_mismatched_sizes=True)
    except OSError as exc:
        raise EdgecxrError(f"the weights cannot be loaded ({exc})", path=base,
                           fix="check that the folder holds model.safetensors or "
                               "pytorch_model.bin") from exc
    spec = spec_from_checkpoint(Path(source) if local else None, config)
    return model, ModelSource("pretrained", base, spec)


def spec_from_checkpoint(folder: Path | None, config) -> PreprocessSpec:
    """edgecxr's own preprocess.json first, else the image-processor config, else ImageNet."""
    size = int(getattr(config, "image_size", 256))
    if folder is not None and (folder / SPEC_FILENAME).is_file():
        return PreprocessSpec.load(folder)
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        proc = json.loads((folder / "preprocessor_config.json").read_text())
        height, width = _processor_size(proc.get("size"), size)
        return PreprocessSpec(height=height, width=width,
                              mean=tuple(proc.get("image_mean", IMAGENET_MEAN)),
                              std=tuple(proc.get("image_std", IMAGENET_STD)))
    return PreprocessSpec(height=size, width=size)


def _processor_size(size, default: int) -> tuple[int, int]:
    if isinstance(size, dict):
        if "height" in size:
            return int(size["height"]), int(size["width"])
        if "shortest_edge" in size:
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    if isinstance(size, int):
        return size, size
    return default, default


def save_checkpoint(model, spec: PreprocessSpec, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    spec.save(folder)
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True, "size": {"height": spec.height, "width": spec.width},
        "resample": 2 if spec.interpolation == "bilinear" else 3,
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(spec.mean), "image_std": list(spec.std),
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")


def load_checkpoint(folder: str | Path):
    """A trained edgecxr checkpoint -> (model in eval mode, spec, class names)."""
    tf = _transformers()
    folder = Path(folder)
    if (folder / "model" / "config.json").is_file():  # a RUN folder was given
        folder = folder / "model"
    if not (folder / "config.json").is_file():
        raise EdgecxrError("no config.json: not a checkpoint folder", path=folder,
                           fix="give RUN/model (or the RUN folder) written by edgecxr train")
    config = tf.AutoConfig.from_pretrained(folder, local_files_only=True)
    if getattr(config, "model_type", None) != "swinv2":
        raise EdgecxrError(f"model type is {config.model_type!r}, not swinv2", path=folder,
                           fix="give a Swin-V2 checkpoint")
    model = tf.Swinv2ForImageClassification.from_pretrained(folder, local_files_only=True)
    model.eval()
    names = [config.id2label[i] for i in range(config.num_labels)]
    return model, spec_from_checkpoint(folder, config), names


def checkpoint_sha256(folder: str | Path) -> str:
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        weights = folder / "pytorch_model.bin"
    return sha256_file(weights)
