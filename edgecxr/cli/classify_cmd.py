"""`edgecxr classify`: files once, through the same gate and engine as `watch`, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgecxr.cli.options import (
    FROM_BUNDLE,
    AllowUnqualifiedOpt,
    BackendOpt,
    BodyPartOpt,
    BundleOpt,
    ModalityOpt,
    OpenVinoDeviceOpt,
    PopulationAgeOpt,
    PopulationTextOpt,
    PrecisionOpt,
    QualificationDirOpt,
    RefuseAgeOutsideOpt,
    ThreadsOpt,
    ViewOpt,
)
from edgecxr.cli.runtime_cmd import _intended_use, _open_classifier


def _not_analysed(path: Path, item, console, table, classes: int, json_out: bool) -> None:
    """One file the intended-use gate refused: its reason in words, the stage, score and threshold."""
    refusal = item.refusal
    if json_out:
        console.print_json(json.dumps({"file": str(path), "status": "out_of_scope", "sha256": item.sha256,
                                       "gate": refusal.to_record(),
                                       **({"flags": [f.to_record() for f in item.flags]} if item.flags else {})}))
    else:
        table.add_row(str(path), f"[yellow]not analysed: {refusal.reason}[/yellow]", *["-"] * classes, "-")


def classify(
    files: Annotated[list[Path], typer.Argument(help="PNG, JPEG or DICOM files.")],
    bundle: BundleOpt = None,
    backend: BackendOpt = "auto",
    precision: PrecisionOpt = "auto",
    openvino_device: OpenVinoDeviceOpt = "CPU",
    threads: ThreadsOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per file instead of a table.")] = False,
    save_input: Annotated[Path | None, typer.Option(help="Write the exact model input of each file as a PNG here.")] = None,
    modality: ModalityOpt = FROM_BUNDLE,
    view: ViewOpt = None,
    body_part: BodyPartOpt = None,
    population_age: PopulationAgeOpt = None,
    population_text: PopulationTextOpt = None,
    refuse_age_outside: RefuseAgeOutsideOpt = None,
    allow_unqualified: AllowUnqualifiedOpt = False,
    qualification_dir: QualificationDirOpt = None,
):
    """Classify files once and print a table (file, label, probabilities, engine, ms)."""
    from rich.table import Table

    from edgecxr.cli.console import err
    from edgecxr.cli.console import out as console
    from edgecxr.runtime.prepare import InputLimits, prepare

    classifier = _open_classifier(bundle, backend, precision, openvino_device, threads, allow_unqualified=allow_unqualified,
                                  qualification_dir=qualification_dir)
    if classifier.choice.warning:
        err.print(f"warning: {classifier.choice.warning}", markup=False, highlight=False)
    use = _intended_use(classifier, modality, view, body_part, population_age, population_text, refuse_age_outside)
    limits = InputLimits(modalities=use.accepted_modalities(), intended_use=use)
    classifier.gate.intended_use = use  # the tags stage with this command's overrides
    spec = classifier.bundle.spec
    names = classifier.class_names
    table = Table(caption=f"engine {classifier.artifact.name}: {classifier.choice.reason}; rule: "
                          f"{classifier.rule.describe()}", caption_justify="left")
    for col in ("file", "label", *(f"P({n})" for n in names), "ms"):
        table.add_column(col, justify="left" if col in ("file", "label") else "right")
    failed = 0
    for path in files:
        item = prepare(path, spec, limits, classifier.gate)
        if item.tensor is not None:  # prepare() leaves it None when it sets the refusal or the error
            probs, judged, infer_ms = classifier.submit(item.tensor[None])()
            item.refusal = judged[0][1]
        if item.refusal is not None:
            failed += 1
            _not_analysed(path, item, console, table, len(names), json_out)
            continue
        if item.error is not None:
            failed += 1
            record = {"file": str(path), "status": "error", "error": {"code": item.error.code, "message": str(item.error)}}
            if json_out:
                console.print_json(json.dumps(record))
            else:
                table.add_row(str(path), f"[red]refused: {item.error.code}[/red]", *["-"] * len(names), "-")
            continue
        fields = classifier.result_fields(probs[0])
        gate = {"score": round(judged[0][0], 6), "threshold": classifier.gate.threshold} if judged[0][0] is not None else None
        ms = item.decode_ms + item.preprocess_ms + infer_ms
        if save_input is not None:
            save_input.mkdir(parents=True, exist_ok=True)
            spec.to_image(item.tensor).save(save_input / f"{path.stem}.model-input.png")
        if json_out:
            console.print_json(json.dumps({
                "file": str(path), "status": "ok", **fields, "sha256": item.sha256,
                "probabilities": {n: float(p) for n, p in zip(names, probs[0])},
                "backend": classifier.artifact.backend, "precision": classifier.artifact.precision,
                "ms": round(ms, 2), **({"gate": gate} if gate else {}),
                **({"flags": [f.to_record() for f in item.flags]} if item.flags else {}),
                **({"dicom": item.meta} if item.meta else {})}))
        else:
            flags = "".join(f"\n[yellow]{f.reason}[/yellow]" for f in item.flags)
            table.add_row(str(path), fields["label"] + flags, *(f"{p:.3f}" for p in probs[0]), f"{ms:.0f}")
    classifier.close()
    if not json_out:
        console.print(table)
    if failed:
        raise typer.Exit(2)  # refusals are errors about the input: exit 2, as every other input error
