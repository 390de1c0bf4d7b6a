"""The `--explain` part of parity.md, and explain.png: maps on correct and wrong cases, PyTorch above
the deployed engine, drawn with Pillow on the same fixed scale as the watcher's overlays."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from edgecxr.explain.overlay import SCALE_POINTS, overlay

TILE = 200
CAPTION = 30
LABEL_WIDTH = 110
CASES = 4  # correct and wrong cases each


def markdown(section: dict) -> list[str]:
    g = section["grid"]
    lines = ["", f"## Explanation maps (occlusion, {section['images']} test images)", "",
             f"Each map: a {g['patch_px']} px square of the image's mean slid in {g['stride_px']} px steps "
             f"({g['squares']} squares, {g['squares'] + 1} engine passes); the value is how far P(class) falls "
             f"with the square covered. Every model explains PyTorch's predicted class. Deletion: P(class) as "
             "the top-ranked pixels are removed (lower is better); insertion: as they are put back into a coarse "
             "copy (higher is better); the baseline is random maps of the same square structure.", "",
             "| model | deletion AUC (random) | insertion AUC (random) | rank correlation with PyTorch (mean / min) | "
             "no map | ms per map (median) | P(classes) of a blank frame |", "|---|---:|---:|---:|---:|---:|---|"]
    models = ([("PyTorch", section["pytorch"])] if section["pytorch"] else [])
    models += [(e["artifact"], e) for e in section["engines"]]
    for name, m in models:
        rho = m.get("rank_correlation_with_pytorch")
        agree = "—" if rho is None else f"{rho['mean']:.3f} / {rho['min']:.3f}"
        blank = ", ".join(f"{k} {v:.2f}" for k, v in m["blank_frame_probabilities"].items())
        lines.append(f"| {name} | {m['deletion']:.3f} ({m['random_deletion']:.3f}) | {m['insertion']:.3f} "
                     f"({m['random_insertion']:.3f}) | {agree}"
                     f" | {m['no_map']} | {m['ms_per_map_median']:.0f} | {blank} |")
    lines += ["", "By the class explained (deletion / insertion, random in brackets):", ""]
    for name, m in models:
        parts = [f"{cls} (n={v['n']}): {v['deletion']:.3f} ({v['random_deletion']:.3f}) / {v['insertion']:.3f} "
                 f"({v['random_insertion']:.3f})" for cls, v in m["by_class"].items()]
        lines.append(f"- {name}: " + "; ".join(parts))
    r = section["randomisation"]
    lines.append("")
    if r is None:
        lines.append(f"PyTorch maps and the randomisation check were not run: {section.get('pytorch_skipped')}.")
    else:
        rho = r["rank_correlation_with_trained"]
        lines.append(f"Model randomisation: maps of the same architecture with fresh random weights correlate "
                     f"{rho['mean']:.3f} on average (max allowed {r['limit']}) with the trained model's: "
                     f"**{'the maps depend on what the model learned' if r['maps_differ'] else 'FAIL'}**.")
    lines += [f"- explain fails: {f}" for f in section["failures"]]
    lines += ["", f"A map shows where covering the image lowers this model's P(class) (full colour at a fall of "
              f"{SCALE_POINTS} points). It does not show disease, is not a segmentation, and a bright region is "
              "not a finding: it says what the model's output depends on, right or wrong.", ""]
    return lines


def figure(spec, data: dict, section: dict, class_names: list[str], path: Path) -> Path | None:
    """Up to CASES correct and CASES wrong cases (by PyTorch's call); PyTorch's maps above the deployed engine's."""
    rows_meta = section["rows"]
    correct = [k for k, r in enumerate(rows_meta) if r["truth"] == r["explained"]][:CASES]
    wrong = [k for k, r in enumerate(rows_meta) if r["truth"] != r["explained"]][:CASES]
    cases = correct + wrong
    models = (["PyTorch"] if "PyTorch" in data["maps"] else []) + [section["deployed"]]
    if not cases:
        return None
    canvas = Image.new("RGB", (LABEL_WIDTH + TILE * len(cases), CAPTION + (TILE + 4) * len(models)), "white")
    draw = ImageDraw.Draw(canvas)
    for col, k in enumerate(cases):
        r = rows_meta[k]
        x = LABEL_WIDTH + col * TILE
        kind = "correct" if k in correct else "WRONG"
        draw.text((x + 4, 2), f"{kind}: truth {r['truth']}", fill="black")
        draw.text((x + 4, 15), f"said {r['explained']}", fill="black" if kind == "correct" else "red")
        for row, model in enumerate(models):
            m = data["maps"][model]
            tile = overlay(spec.to_image(data["inputs"][k]), m["heat"][k]).resize((TILE - 4, TILE - 4))
            if m["reason"][k]:
                ImageDraw.Draw(tile).text((4, 4), "no map: flat", fill="white")
            canvas.paste(tile, (x + 2, CAPTION + row * (TILE + 4)))
    for row, model in enumerate(models):
        for k, part in enumerate(model.split("-", 1)):  # "openvino" / "int8": fits beside the tile
            draw.text((4, CAPTION + row * (TILE + 4) + TILE // 2 + 13 * k), part, fill="black")
    canvas.save(path)
    return path
