"""The loss curve of a training run as a small self-contained HTML page (an inline SVG), for the KFP UI."""

from __future__ import annotations

import html
from typing import Any, Mapping

WIDTH, HEIGHT, PAD = 640, 300, 40


def loss_curve_svg(points: list[list[float]]) -> str:
    """A polyline of ``[step, loss]`` points with min/max labels; an empty plot says so."""
    if not points:
        return f'<svg width="{WIDTH}" height="{HEIGHT}"><text x="{PAD}" y="{PAD}">no steps recorded</text></svg>'
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(losses), max(losses)
    sx = (WIDTH - 2 * PAD) / ((x1 - x0) or 1)
    sy = (HEIGHT - 2 * PAD) / ((y1 - y0) or 1)
    coords = " ".join(f"{PAD + (s - x0) * sx:.1f},{HEIGHT - PAD - (v - y0) * sy:.1f}" for s, v in points)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-size="12">'
        f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" fill="none" stroke="#ccc"/>'
        f'<polyline points="{coords}" fill="none" stroke="#1a73e8" stroke-width="1.5"/>'
        f'<text x="4" y="{PAD + 4}">{y1:.3g}</text><text x="4" y="{HEIGHT - PAD}">{y0:.3g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 10}">step {x0:g}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" text-anchor="end">step {x1:g}</text></svg>'
    )


def training_html(metrics: Mapping[str, Any]) -> str:
    """The page: headline numbers from ``train_metrics.json`` and the loss curve."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(metrics.get(k)))}</td></tr>"
        for k in ("status", "config", "device", "world_size", "steps", "epochs_done", "final_loss",
                  "seconds_per_step", "resume")
    )
    return ("<!doctype html><html><head><meta charset=utf-8><title>Training</title></head>"
            "<body style='font-family:sans-serif'><h1>Training loss</h1>"
            f"{loss_curve_svg(metrics.get('loss_curve') or [])}<table>{rows}</table></body></html>")


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers worth a KFP Metrics entry (finite numbers only; the UI shows them as a table)."""
    out = {}
    for key in ("steps", "epochs_done", "final_loss", "seconds_per_step", "world_size", "wall_seconds_this_run"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            out[key] = float(value)
    return out
