"""The training report: a self-contained HTML page built from ``train_metrics.json``, for the KFP UI and the
experiment directory (:data:`REPORT_HTML`).

The page needs nothing but itself (inline SVG charts, inline CSS, no scripts, fonts or images from elsewhere):
the KFP UI shows it in a sandboxed frame and the copy in the bucket is opened offline. It shows the run as a
table (config, overrides, device, world size, steps and epochs, where it resumed from, time per step, samples
per second, peak GPU memory, the checkpoints), one chart per loss term the sam2 loss logs (raw per step and
smoothed), the learning rate of every optimizer param group and the seconds each step took.
"""

from __future__ import annotations

import datetime
import html
import math
from typing import Any, Iterable, Mapping, Sequence

REPORT_HTML = "train_report.html"

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 26, 46  # plot margins (room for tick labels and axis titles)
RAW_COLOUR, SMOOTH_COLOUR = "#9ab8e8", "#0b57d0"

# The terms sam2's MultiStepMultiMasksAndIous logs (training/loss_fns.py), in the order the page shows them.
LOSS_TERMS = {
    "core_loss": "total loss (core_loss: the weighted sum of the terms below)",
    "loss_mask": "mask loss (loss_mask: sigmoid focal loss)",
    "loss_dice": "dice loss (loss_dice)",
    "loss_iou": "IoU loss (loss_iou: predicted against actual mask IoU)",
    "loss_class": "class loss (loss_class: object score)",
}

CSS = ("body{font-family:sans-serif;margin:1em;color:#202124;max-width:1360px}"
       "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #dadce0;padding:3px 8px;"
       "text-align:left;vertical-align:top;font-size:13px}th{background:#f1f3f4;font-weight:600}"
       "td.num{text-align:right;font-variant-numeric:tabular-nums}.charts{display:flex;flex-wrap:wrap;gap:12px}"
       "figure{margin:0}figcaption{font-size:12px;color:#5f6368;max-width:640px}"
       "svg text{font-family:sans-serif;font-size:11px;fill:#3c4043}svg .title{font-size:12px;font-weight:600}"
       ".muted{color:#5f6368}code{font-size:12px;word-break:break-all}")


# ---- numbers and text ---------------------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any, digits: int = 4) -> str:
    """A number as people write it: integers whole, others to ``digits`` significant digits; "—" for none."""
    if not _finite(value):
        return "—" if value is None else html.escape(str(value))
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def _duration(seconds: Any) -> str:
    if not _finite(seconds):
        return "—"
    return str(datetime.timedelta(seconds=round(seconds)))


def _bytes(value: Any) -> str:
    return f"{value / 2**30:.2f} GiB" if _finite(value) else "—"


def _text(value: Any) -> str:
    """Any metrics value as escaped text, never a Python repr: lists joined, mappings as ``key: value``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _num(value)
    if isinstance(value, Mapping):
        return "; ".join(f"{html.escape(str(k))}: {_text(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) or "none"
    return html.escape(str(value))


def resume_text(plan: Mapping[str, Any] | None) -> str:
    """How the run started, from the ``resume`` plan the worker recorded (plain text)."""
    plan = plan or {}
    kind = plan.get("kind")
    if kind == "resume" and plan.get("explicit"):
        text = f"started from the given checkpoint {plan.get('checkpoint')}"
        if plan.get("existing_step") is not None:
            text += f", after deleting the experiment's checkpoints up to step {plan['existing_step']} (--overwrite)"
        return text
    if kind == "resume":
        return (f"resumed from the experiment's newest checkpoint, step {plan.get('step')} "
                f"(epoch {plan.get('epoch')}): {plan.get('checkpoint')}")
    if kind == "overwrite":
        return f"started fresh after deleting the checkpoints up to step {plan.get('existing_step')} (--overwrite)"
    if kind == "fresh":
        return "started fresh (no checkpoint in the experiment)"
    return "not recorded" if not plan else "; ".join(f"{k}: {v}" for k, v in plan.items())


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): ``weight`` 0 is the raw
    curve; the first points are not dragged towards zero."""
    out, acc, norm = [], 0.0, 0.0
    for value in values:
        acc = weight * acc + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(acc / norm)
    return out


def smoothing_weight(n: int) -> float:
    """More smoothing for longer curves: about a twentieth of the curve in the average, within 0.6..0.95."""
    return min(0.95, max(0.6, 1 - 20 / max(n, 1)))


def nice_ticks(lo: float, hi: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten; whole numbers only with ``integer``) from
    at or below ``lo`` to at or above ``hi``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    multiples = (1, 2, 5, 10) if integer and power < 10 else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in multiples if m * power >= raw)
    if integer:
        step = max(1, round(step))
    first = math.floor(lo / step) * step
    ticks = [first]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(first + len(ticks) * step, 12))
    return ticks


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels for one axis, all in one format, with just enough digits to tell neighbouring ticks apart."""
    if not ticks:
        return []
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
    exp_step = math.floor(math.log10(step))
    extra = 1 if abs(step / 10 ** exp_step - 2.5) < 1e-6 else 0  # 2.5, 25, 0.25: one digit more
    biggest = max(abs(t) for t in ticks)
    if biggest and (biggest >= 1e5 or biggest < 1e-3):
        digits = max(0, math.floor(math.log10(biggest)) - exp_step + extra)
        return ["0" if t == 0 else f"{t:.{digits}e}" for t in ticks]
    decimals = max(0, -exp_step + extra)
    return [f"{t:,.{decimals}f}" for t in ticks]


# ---- charts -------------------------------------------------------------------------------------------------------


def _points(points: Iterable[Sequence[float]]) -> tuple[list[tuple[float, float]], int]:
    kept, dropped = [], 0
    for p in points or []:
        if len(p) >= 2 and _finite(p[0]) and _finite(p[1]):
            kept.append((float(p[0]), float(p[1])))
        else:
            dropped += 1
    return kept, dropped


def line_chart(chart_id: str, title: str, points: Iterable[Sequence[float]], *, y_label: str,
               x_label: str = "step", smooth: bool = True, caption: str = "") -> str:
    """One chart as a ``<figure>`` with an inline SVG: the raw series (light) and, with ``smooth``, its EMA
    (dark), on axes with tick values and titles. Non-finite values are left out and counted in the caption."""
    data, dropped = _points(points)
    notes = [caption] if caption else []
    if dropped:
        notes.append(f"{dropped} non-finite value{'s' if dropped > 1 else ''} left out.")
    head = (f'<figure id="{html.escape(chart_id)}" class="chart"><svg xmlns="http://www.w3.org/2000/svg" '
            f'role="img" aria-label="{html.escape(title)}" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{html.escape(title)}</title>')
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#bdc1c6"/>']
    if not data:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle">'
                     "no values recorded</text>")
    else:
        xs = [x for x, _ in data]
        ys = [y for _, y in data]
        xt = nice_ticks(min(xs), max(xs), 6, integer=all(x.is_integer() for x in xs))
        yt = nice_ticks(min(ys), max(ys), 5)
        x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

        def px(x: float) -> float:
            return LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

        def py(y: float) -> float:
            return TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

        for t, label in zip(yt, tick_labels(yt)):
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                         'stroke="#eceff1"/>')
            parts.append(f'<text class="tick y" x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">'
                         f"{label}</text>")
        for t, label in zip(xt, tick_labels(xt)):
            parts.append(f'<line class="tick" x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{TOP + plot_h}" '
                         f'y2="{TOP + plot_h + 4}" stroke="#5f6368"/>')
            parts.append(f'<text class="tick x" x="{px(t):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                         f"{label}</text>")
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in data)
        raw_colour = RAW_COLOUR if smooth else SMOOTH_COLOUR
        parts.append(f'<polyline class="series raw" points="{coords}" fill="none" stroke="{raw_colour}" '
                     'stroke-width="1.2"/>')
        if len(data) == 1:
            parts.append(f'<circle class="series raw" cx="{px(xs[0]):.1f}" cy="{py(ys[0]):.1f}" r="3" '
                         f'fill="{SMOOTH_COLOUR}"/>')
        legend = [("per step", raw_colour)]
        if smooth and len(data) > 2:
            weight = smoothing_weight(len(data))
            smoothed = ema(ys, weight)
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, smoothed))
            parts.append(f'<polyline class="series smoothed" points="{coords}" fill="none" '
                         f'stroke="{SMOOTH_COLOUR}" stroke-width="2"/>')
            legend.append((f"smoothed (EMA {weight:.2f})", SMOOTH_COLOUR))
            notes.append(f"Last value {_num(ys[-1])}, smoothed {_num(smoothed[-1])}; "
                         f"min {_num(min(ys))}, max {_num(max(ys))}.")
        elif data:
            notes.append(f"Last value {_num(ys[-1])}; min {_num(min(ys))}, max {_num(max(ys))}.")
        lx = LEFT
        for name, colour in legend:
            parts.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{TOP - 10}" y2="{TOP - 10}" stroke="{colour}" '
                         f'stroke-width="2"/><text class="legend" x="{lx + 20}" y="{TOP - 6}">'
                         f"{html.escape(name)}</text>")
            lx += 30 + 7 * len(name)
    parts.append(f'<text class="axis-label x" x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
                 f"{html.escape(x_label)}</text>")
    cy = TOP + plot_h / 2
    parts.append(f'<text class="axis-label y" x="14" y="{cy}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {cy})">{html.escape(y_label)}</text>')
    caption_html = f"<figcaption><b>{html.escape(title)}</b>. {html.escape(' '.join(notes))}</figcaption>"
    return head + "".join(parts) + "</svg>" + caption_html + "</figure>"


# ---- the page -----------------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "x"


def _term_title(term: str) -> str:
    dataset, _, base = term.rpartition("/")
    title = LOSS_TERMS.get(base, base)
    return f"{title}, dataset {dataset}" if dataset else title


def loss_charts(metrics: Mapping[str, Any]) -> list[str]:
    """The total loss, then one chart per term (sam2's order first, then any others)."""
    terms: Mapping[str, Any] = metrics.get("loss_terms") or {}
    order = {t: i for i, t in enumerate(LOSS_TERMS)}
    names = sorted(terms, key=lambda t: (t.rpartition("/")[0], order.get(t.rpartition("/")[2], len(order)), t))
    charts = []
    if not any(t.rpartition("/")[2] == "core_loss" for t in names):
        charts.append(line_chart("loss-total", "total loss", metrics.get("loss_curve") or [], y_label="loss"))
    note = "Unweighted, as the sam2 loss logs it: summed over the frames of a clip, averaged over its objects."
    for term in names:
        base = term.rpartition("/")[2]
        charts.append(line_chart(f"loss-{_slug(term)}", _term_title(term), terms[term], y_label="loss",
                                 caption="" if base == "core_loss" else note))
    return charts


def _group_caption(group: Mapping[str, Any] | None) -> str:
    if not group:
        return ""
    modules = list(group.get("modules") or [])
    shown = ", ".join(modules[:4]) + (f" and {len(modules) - 4} more" if len(modules) > 4 else "")
    return (f"{_num(group.get('tensors'))} tensors, {_num(group.get('elements'))} parameters"
            + (f" of {shown}" if shown else "")
            + (f"; weight decay {_num(group.get('weight_decay'))}" if group.get("weight_decay") is not None else "")
            + ".")


def lr_charts(metrics: Mapping[str, Any]) -> list[str]:
    curves: Mapping[str, Any] = metrics.get("lr_curves") or {}
    groups = list(metrics.get("param_groups") or [])
    charts = []
    for name in sorted(curves, key=lambda g: (not str(g).isdigit(), int(g) if str(g).isdigit() else 0, str(g))):
        info = groups[int(name)] if str(name).isdigit() and int(name) < len(groups) else None
        charts.append(line_chart(f"lr-group-{_slug(str(name))}", f"learning rate, param group {name}",
                                 curves[name], y_label="learning rate", smooth=False,
                                 caption=_group_caption(info)))
    return charts


def _rows(rows: Sequence[tuple[str, str]], table_id: str) -> str:
    body = "".join(f"<tr><th scope=row>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def run_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run table: (label, HTML-escaped value) pairs."""
    m = metrics
    device = _text(m.get("device"))
    if m.get("gpu_name"):
        device += f" ({_text(m['gpu_name'])})"
    steps = _num(m.get("steps"))
    if m.get("steps_this_run") is not None:
        steps += f" ({_num(m.get('steps_this_run'))} in this run)"
    epochs = _num(m.get("epochs_done")) + (f" of {_num(m['max_epochs'])}" if m.get("max_epochs") is not None else "")
    rows = [
        ("status", _text(m.get("status"))),
        ("config", _text(m.get("config"))),
        ("overrides", _text(list(m.get("overrides") or [])) if "overrides" in m else "—"),
        ("experiment", f"<code>{_text(m.get('experiment_dir'))}</code>"),
        ("device", device),
        ("world size", f"{_num(m.get('world_size'))} process(es)"),
        ("steps", steps),
        ("epochs (trainer epochs)", epochs),
        ("resume", html.escape(resume_text(m.get("resume")))),
        ("final loss (last epoch's mean)", _num(m.get("final_loss"))),
        ("seconds per step (median)", _num(m.get("seconds_per_step"), 3)),
        ("samples (clips) per second, all processes", _num(m.get("samples_per_second"), 3)),
        ("batch size per process (clips)", _num(m.get("batch_size_per_rank"), 3)),
    ]
    if m.get("gpu_max_memory_bytes") is not None:
        rows.append(("peak GPU memory allocated (rank 0)", _bytes(m.get("gpu_max_memory_bytes"))))
    rows.append(("wall time of this run", _duration(m.get("wall_seconds_this_run"))))
    digests = m.get("replica_digests")
    if digests:
        same = len(set(digests)) == 1
        rows.append(("replica weights", f"{len(digests)} replica(s), "
                     + ("identical" if same else "<b>different</b>") + f" (sha256 {html.escape(digests[0][:12])}…)"))
    return rows


def _checkpoint_field(c: Any, name: str) -> Any:
    return c.get(name) if isinstance(c, Mapping) else getattr(c, name, None)


def checkpoints_table(metrics: Mapping[str, Any], checkpoints: Sequence[Any] | None) -> str:
    """The published checkpoints (``CheckpointInfo`` objects or dicts), the latest marked."""
    latest = metrics.get("latest_checkpoint") or {}
    items = list(checkpoints) if checkpoints else ([latest] if latest else [])
    if not items:
        return '<p id="checkpoints" class="muted">No checkpoint published yet.</p>'
    rows = []
    for c in items:
        step = _checkpoint_field(c, "step")
        mark = " (latest)" if latest and step == latest.get("step") else ""
        rows.append(f"<tr><td class=num>{_num(step)}{mark}</td><td class=num>{_num(_checkpoint_field(c, 'epoch'))}"
                    f"</td><td><code>{_text(_checkpoint_field(c, 'model'))}</code></td>"
                    f"<td><code>{_text(_checkpoint_field(c, 'checkpoint'))}</code></td></tr>")
    return ('<table id="checkpoints"><tr><th>step</th><th>epoch</th><th>model-only weights</th>'
            f"<th>trainer state</th></tr>{''.join(rows)}</table>")


def epochs_table(metrics: Mapping[str, Any]) -> str:
    """Per-epoch means of the losses (sam2's epoch outputs, ``Losses/...`` keys shown without the prefix)."""
    epochs = [e for e in metrics.get("epochs") or [] if isinstance(e, Mapping)]
    keys = sorted({k for e in epochs for k in e if k.startswith("Losses/")})
    if not epochs or not keys:
        return ""
    head = "<tr><th>epoch</th>" + "".join(f"<th>{html.escape(k[len('Losses/'):])}</th>" for k in keys) + "</tr>"
    body = "".join(f"<tr><td class=num>{_num(e.get('Trainer/epoch', i))}</td>"
                   + "".join(f"<td class=num>{_num(e.get(k))}</td>" for k in keys) + "</tr>"
                   for i, e in enumerate(epochs))
    return f'<h2>Per epoch</h2><table id="epochs">{head}{body}</table>'


def training_html(metrics: Mapping[str, Any], checkpoints: Sequence[Any] | None = None) -> str:
    """The whole page from a ``train_metrics.json`` dict and, when known, the experiment's checkpoints."""
    title = f"Training report: {metrics.get('config') or 'run'}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        '<h2 id="run-heading">Run</h2>', _rows(run_rows(metrics), "run"),
        "<h2>Checkpoints</h2>", checkpoints_table(metrics, checkpoints),
        "<h2>Loss</h2>", '<div class="charts" id="loss-charts">', *loss_charts(metrics), "</div>",
    ]
    lr = lr_charts(metrics)
    if lr:
        sections += ["<h2>Learning rate</h2>", '<div class="charts" id="lr-charts">', *lr, "</div>"]
    if metrics.get("step_seconds_curve"):
        sections += ["<h2>Speed</h2>", '<div class="charts" id="speed-charts">',
                     line_chart("seconds-per-step", "seconds per step", metrics["step_seconds_curve"],
                                y_label="seconds",
                                caption="Time from one step to the next on rank 0 (data loading, the optimizer "
                                        "and checkpoint saves included)."),
                     "</div>"]
    sections.append(epochs_table(metrics))
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(sections) + "</body></html>")


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers worth a KFP Metrics entry (finite numbers only; the UI shows them as a table)."""
    out = {}
    for key in ("steps", "epochs_done", "final_loss", "seconds_per_step", "samples_per_second", "world_size",
                "wall_seconds_this_run"):
        value = metrics.get(key)
        if _finite(value):
            out[key] = float(value)
    if _finite(metrics.get("gpu_max_memory_bytes")):
        out["gpu_max_memory_gib"] = metrics["gpu_max_memory_bytes"] / 2**30
    return out
