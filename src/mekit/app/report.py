"""timeline.png and report.html of an analysis.

report.html is one self-contained file to open and share: inline CSS, every picture inlined as
a base64 `data:` URI, no script and no reference to anything outside it. It holds the video's
facts, the model's (with a banner when it is the synthetic demo model), the warnings (and, when
nothing was spotted, a notice saying so), the timeline and one card per event with its times,
emotion, probability bars, action units (each with its probability and the face region it moved),
motion map and explanation map. With the synthetic demo model the words describe motion: each
event is headed by its action units (or "motion" when none was found), the timeline is
labelled with them, and the demo model's class is shown below as a synthetic class, not as an
emotion.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mekit import __version__  # noqa: E402
from mekit.app.result import UNKNOWN, AnalysedEvent, Analysis, emotion_colour  # noqa: E402
from mekit.train.report import ORACLE_WARNING  # noqa: E402

DEMO_BANNER = "trained on synthetic data, not a real-world emotion model"
NOTHING_SPOTTED = "Nothing was spotted in this video"


def _rgb(emotion: str) -> tuple[float, float, float]:
    r, g, b = emotion_colour(emotion)
    return (r / 255, g / 255, b / 255)


def plot_timeline(
    path: Path,
    times: np.ndarray,
    curve: np.ndarray,
    threshold: float,
    events: Sequence[AnalysedEvent],
    title: str,
    demo: bool = False,
) -> Path:
    """The motion curve over time (s), its threshold and the events shaded in their emotion's
    colour, each labelled with its number and emotion (`demo`: with its action units instead,
    and no emotion legend)."""
    fig, ax = plt.subplots(figsize=(12, 3.4), dpi=100)
    if len(times):
        ax.plot(times, curve, lw=0.8, color="black", label="motion (noise units)")
        if math.isfinite(threshold):
            ax.axhline(threshold, color="orange", lw=1, ls="--", label="threshold")
    finite = np.asarray(curve)[np.isfinite(curve)]
    top = float(finite.max()) if len(finite) else 1.0
    top = max(top, threshold if math.isfinite(threshold) else 0.0, 1e-6)
    for e in events:
        ax.axvspan(e.onset_s, e.offset_s, color=_rgb(e.emotion), alpha=0.35, lw=0)
        ax.text(
            (e.onset_s + e.offset_s) / 2,
            top * 1.04,
            f"{e.index} {_motion_words(e, short=True) if demo else e.emotion}",
            ha="center",
            va="bottom",
            fontsize=7,
            rotation=90 if len(events) > 12 else 0,
            color=_rgb(e.emotion),
        )
    ax.set_ylim(top=top * (1.35 if len(events) <= 12 else 1.7))
    if len(times):
        ax.set_xlim(float(times[0]), float(times[-1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("motion contrast")
    ax.set_title(title, fontsize=9)
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=_rgb(emotion), alpha=0.5, label=emotion)
        for emotion in dict.fromkeys(e.emotion for e in events)
        if not demo
    ]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=min(6, len(handles)))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def data_uri(path: Path) -> str:
    """A PNG file as a `data:image/png;base64,...` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1240px; padding: 16px;
  color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0.2em 0 0.6em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: 10px 14px; margin: 10px 0;
  border-radius: 6px; font-weight: 600; }
.notice { background: #e8f0fe; border: 1px solid #7baaf7; padding: 10px 14px; margin: 10px 0;
  border-radius: 6px; }
.warnings { background: #fdecea; border: 1px solid #f5a3a3; padding: 8px 14px; margin: 10px 0;
  border-radius: 6px; }
.facts { display: flex; gap: 24px; flex-wrap: wrap; }
table.kv { border-collapse: collapse; } table.kv td { padding: 2px 10px 2px 0;
  vertical-align: top; } table.kv td:first-child { color: #666; }
img.timeline { width: 100%; border: 1px solid #ddd; background: #fff; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { background: #fff; border: 1px solid #ddd; border-left: 8px solid var(--c);
  border-radius: 6px; padding: 10px 12px; width: 560px; }
.card h3 { margin: 0 0 4px; font-size: 1em; } .muted { color: #666; font-size: 0.9em; }
.emotion { font-weight: 700; color: var(--c); }
.bar { display: flex; align-items: center; gap: 6px; font-size: 0.85em; margin: 2px 0; }
.bar .name { width: 90px; } .bar .track { flex: 1; background: #eee; height: 12px;
  border-radius: 3px; } .bar .fill { height: 12px; border-radius: 3px; }
.bar .value { width: 56px; text-align: right; white-space: nowrap; }
.maps { display: flex; gap: 8px; margin-top: 8px; } .maps img { width: 256px; height: 256px; }
footer { margin-top: 2em; color: #888; font-size: 0.85em; }
"""


def write_report(analysis: Analysis, path: Path, timeline_png: Path) -> Path:
    """Write report.html for `analysis` (see the module doc); maps are read from `analysis.out`."""
    e = html.escape
    video, model = analysis.video, analysis.model
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mekit analysis: {e(video.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Micro-expression analysis of {e(video.name)}</h1>",
    ]
    if model.demo:
        parts.append(
            f'<div class="banner">Demo model: {e(DEMO_BANNER)}. Its emotions say nothing about '
            "real people; train a model on a real corpus with <code>mekit train</code> and "
            "pass it with <code>--model</code>.</div>"
        )
    if not analysis.events:
        parts.append(
            f'<div class="notice">{e(NOTHING_SPOTTED)}: the spotter found no micro- or '
            "macro-expression above its threshold.</div>"
        )
    if analysis.warnings:
        items = "".join(f"<li>{e(w)}</li>" for w in analysis.warnings)
        parts.append(f'<div class="warnings"><b>Warnings</b><ul>{items}</ul></div>')
    kinds = [ev.kind for ev in analysis.events]
    video_rows = [
        ("file", video.name),
        ("size", f"{video.width} x {video.height} px"),
        ("frame rate", f"{video.fps:.3f} frames/s" + (" (variable)" if video.variable_fps else "")),
        ("frames", f"{video.n_frames}" + ("" if video.complete else " (read until corrupt data)")),
        ("duration", f"{video.duration_s:.2f} s"),
        ("events", f"{len(kinds)} ({kinds.count('micro')} micro, {kinds.count('macro')} macro)"),
        ("spotter", analysis.spotter),
    ]
    model_rows = [
        ("model", model.name),
        ("file", str(model.path)),
        ("classes", ", ".join(model.labels)),
        ("trained on", model.trained_on),
    ]
    metrics = model.metrics or {}
    scores = [f"{k.upper()} {metrics[k]:.3f}" for k in ("uf1", "uar") if _number(metrics.get(k))]
    if scores and model.oracle:
        protocol = metrics.get("protocol", "cross-validation")
        model_rows.append((f"{protocol} figures, {ORACLE_WARNING}", ", ".join(scores)))
    elif scores:
        protocol = metrics.get("protocol", "cross-validation")
        model_rows.append((f"{protocol} estimate", ", ".join(scores)))
    if model.created:
        model_rows.append(("created", model.created))
    parts += [
        '<div class="facts">',
        f"<div><h2>Video</h2>{_table(video_rows)}</div>",
        f"<div><h2>Model</h2>{_table(model_rows)}</div>",
        "</div>",
        "<h2>Timeline</h2>",
        f'<img class="timeline" alt="motion over time" src="{data_uri(timeline_png)}">',
    ]
    if analysis.events:
        parts.append('<h2>Events</h2><div class="cards">')
        parts += [_card(ev, analysis.out, model.labels, model.demo) for ev in analysis.events]
        parts.append("</div>")
    files = ", ".join(e(name) for name in analysis.files.values() if name)
    parts += [
        f"<footer>mekit {e(__version__)}; analysed in {analysis.seconds:.1f} s. "
        f"Files beside this report: {files}.</footer>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def _motion_words(event: AnalysedEvent, short: bool = False) -> str:
    """What moved, in FACS terms: "AU4+AU7" (short) or "brow lowerer (AU4), lid tightener
    (AU7)"; "motion" when the AU model found none."""
    if not event.aus:
        return "motion"
    if short:
        return "+".join(f"AU{a['au']}" for a in event.aus)
    return ", ".join(f"{a['name']} (AU{a['au']})" for a in event.aus)


def _au_rows(event: AnalysedEvent) -> str:
    e = html.escape
    rows = []
    for a in event.aus:
        side = "" if a.get("side", "both") == "both" else f", {a['side']} of the image"
        p = float(a["probability"])
        rows.append(
            f'<div class="bar"><span class="name">AU{a["au"]}</span><span class="track">'
            f'<div class="fill" style="width: {100 * p:.1f}%; background: #5b6b8c"></div>'
            f'</span><span class="value">{100 * p:.1f} %</span></div>'
            f'<div class="muted">{e(a["name"])}: {e(a["region"])}{e(side)}</div>'
        )
    if not rows:
        return '<div class="muted">action units: none above the AU model\'s threshold</div>'
    return '<div class="muted">action units (AU model trained on synthetic faces)</div>' + "".join(
        rows
    )


def _card(event: AnalysedEvent, out: Path, labels: Sequence[str], demo: bool = False) -> str:
    e = html.escape
    r, g, b = emotion_colour(event.emotion) if not demo else (91, 107, 140)
    if demo and event.emotion != UNKNOWN:
        title = f'<span class="emotion">{e(_motion_words(event))}</span>'
    else:
        title = f'<span class="emotion">{e(event.emotion)}</span>'
    head = (
        f"<h3>#{event.index} {e(event.kind)}: {title}</h3>"
        f'<div class="muted">{event.onset_s:.2f} - {event.offset_s:.2f} s '
        f"(apex {event.apex_s:.2f} s; frames {event.onset}-{event.offset}, apex {event.apex}); "
        f"spotter score {event.score:.2f}"
        + (f"; during {e(event.during)}" if event.during else "")
        + "</div>"
    )
    bars = []
    for label in labels:
        if label not in event.probabilities:
            continue
        p = event.probabilities[label]
        cr, cg, cb = emotion_colour(label)
        bars.append(
            f'<div class="bar"><span class="name">{e(label)}</span><span class="track">'
            f'<div class="fill" style="width: {100 * p:.1f}%; background: rgb({cr},{cg},{cb})">'
            f'</div></span><span class="value">{100 * p:.1f} %</span></div>'
        )
    if demo and bars:
        bars.insert(0, '<div class="muted">demo model class (synthetic, not an emotion)</div>')
    if event.emotion == UNKNOWN:
        bars.append('<div class="muted">not recognised (see the warnings)</div>')
    else:
        bars.insert(0, _au_rows(event))
    maps = []
    for name, alt in ((event.motion_map, "motion map"), (event.explanation_map, "Grad-CAM")):
        if name and (out / name).is_file():
            maps.append(f'<img alt="{alt}" src="{data_uri(out / name)}">')
    maps_html = f'<div class="maps">{"".join(maps)}</div>' if maps else ""
    return f'<div class="card" style="--c: rgb({r},{g},{b})">{head}{"".join(bars)}{maps_html}</div>'
