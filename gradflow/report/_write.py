"""``write_report``: figures, ``DIR/report.html`` and ``DIR/report.md``."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradflow import _specs, plots
from gradflow._checks import check_choice
from gradflow.report import _select as s
from gradflow.report._conditions import sections
from gradflow.report._figures import (
    FIGURES,
    _entry_label,
    _num,
    _spread,
    clip_rows,
    recommended,
    summary_entries,
)
from gradflow.results import (
    CONFIG,
    Results,
    atomic_write_text,
    load,
    threshold_label,
    unfinished,
)

_MAX_ROWS = 200
# On screen a 3.5 in column figure reads best at about 560 px wide.
_PX_PER_INCH = 160


def write_report(
    directory: str | os.PathLike, *, formats: Sequence[str] = ("pdf", "svg", "png")
) -> Path:
    """Draw every figure the results support and write the HTML and Markdown report.

    Figures are those named in ``config["experiment"]["figures"]`` when that list
    is non-empty, else every figure of ``gradflow._specs`` whose data is present. Each
    goes to ``DIR/figures/<name>.<fmt>``; ``DIR/report.html`` is one
    self-contained file (inline CSS, figures embedded as base64 PNG, no network)
    and ``DIR/report.md`` links ``figures/<name>.png``. A figure whose data is
    missing is skipped; one that fails to draw is listed as such in the report.
    Never imports jax.

    Args:
        directory: a results directory (see ``docs/results-format.md``).
        formats: figure files to write, any of ``"pdf"``, ``"svg"``, ``"png"``.

    Returns:
        The path of ``report.html``.
    """
    if isinstance(formats, str):
        formats = (formats,)
    for fmt in formats:
        check_choice("formats", fmt, ("pdf", "svg", "png"))
    results = load(directory)
    out = Path(directory)
    figures, skipped = _draw_all(results, out / "figures", tuple(formats))
    context = _Context(results, figures, skipped, tuple(formats))
    html_path = out / "report.html"
    atomic_write_text(html_path, _html(context))
    atomic_write_text(out / "report.md", _markdown(context))
    return html_path


class _Figure:
    def __init__(self, name, png, note, files, width_in):
        self.name, self.png, self.note, self.files = name, png, note, files
        self.width_in: float = width_in

    @property
    def caption(self) -> str:
        spec = _specs.figures().get(self.name)
        caption = spec.caption if spec else ""
        return caption + (" " + self.note if self.note else "")


class _Context:
    def __init__(self, results, figures, skipped, formats):
        self.results: Results = results
        self.figures: list[_Figure] = figures
        self.skipped: list[tuple[str, str]] = skipped
        self.formats: tuple[str, ...] = formats


def _wanted(results: Results) -> tuple[list[str], list[tuple[str, str]]]:
    known = _specs.figures()
    listed = (results.config.get("experiment") or {}).get("figures") or []
    if not listed:
        return list(known), []
    unknown = [(n, "not a known figure") for n in listed if n not in known]
    return [n for n in listed if n in known], unknown


def _draw_all(
    results: Results, folder: Path, formats: tuple[str, ...]
) -> tuple[list[_Figure], list[tuple[str, str]]]:
    names, skipped = _wanted(results)
    explicit = bool((results.config.get("experiment") or {}).get("figures"))
    drawn = []
    for name in names:
        if name not in FIGURES:
            skipped.append(
                (name, "no drawing function (gradflow.report.register_figure)")
            )
            continue
        try:
            fig = FIGURES[name](results)
        except Exception as err:  # one bad figure must not sink the rest
            warnings.warn(f"figure {name} failed: {err!r}", stacklevel=2)
            skipped.append((name, f"failed to draw: {type(err).__name__}: {err}"))
            continue
        if fig is None:
            if explicit:
                skipped.append((name, "the results hold no data for it"))
            continue
        files = plots.save(fig, folder / name, formats) if formats else []
        png = next((p for p in files if p.suffix == ".png"), None)
        if png is not None:
            data = png.read_bytes()
        else:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=200)
            data = buf.getvalue()
        drawn.append(_Figure(name, data, fig.get_label(), files, fig.get_figwidth()))
    return drawn, skipped


# -- numbers and tables -------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | np.number):
        v = float(value)
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}".replace("-", "−")
        return f"{v:.4g}".replace("-", "−")
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _metric_cell(record: dict[str, Any], name: str) -> str:
    raw = record.get("metrics", {}).get(name)
    if raw is None:
        return "—"
    vals = raw if isinstance(raw, list) else [raw]
    med = plots.finite_median(vals)
    if name == "diverged":
        arr = np.array([np.nan if v is None else v for v in vals], np.float64)
        med = float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan
    text = _fmt(med)
    bad = sum(1 for v in vals if v is None)
    if bad and bad < len(vals):
        text += f" ({bad} non-finite)"
    return text


def _condition_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """One row per condition: the varying coordinates, then medians over seeds."""
    recs = results.records
    keys = list(s.varying(recs)) or (list(recs[0]["coords"])[:1] if recs else [])
    present = {m for r in recs for m in r.get("metrics", {})}
    if summary_entries(results):  # the clipping table has these, per condition
        present -= {"diverged", "final_loss", "final_accuracy", "clip_fraction"}
    headers = _specs.metric_headers()
    metrics = [m for m in headers if m in present]
    if not metrics:
        return [], []
    header = [k.replace("_", " ") for k in keys] + [headers[m] for m in metrics]
    rows = []
    for r in recs[:_MAX_ROWS]:
        coords = [
            threshold_label(r["coords"].get(k))
            if k == "threshold"
            else _fmt(r["coords"].get(k))
            for k in keys
        ]
        rows.append(coords + [_metric_cell(r, m) for m in metrics])
    return header, rows


def _spread_text(v: Any) -> str:
    """``median (q10–q90)`` of a summary statistic (a number or a dict)."""
    med = _num(v)
    if math.isnan(med):
        return "—"
    lo, hi = _spread(v, med)
    if lo == hi or math.isnan(lo) or math.isnan(hi):
        return _fmt(med)
    return f"{_fmt(med)} ({_fmt(lo)} to {_fmt(hi)})"


def _clip_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """One row per clipping condition, from ``summary.json`` (or metrics)."""
    entries = summary_entries(results)
    if not entries:
        rows = clip_rows(results)
        header = ["condition", "lr", "divergence rate", "final loss (10% to 90%)"]
        return header, [
            [
                r["label"] + (" (recommended)" if r["recommended"] else ""),
                _fmt(r["lr"]),
                _fmt(r["divergence_rate"]),
                _spread_text(
                    {
                        "median": r["final_loss"],
                        "q10": r["final_loss_lo"],
                        "q90": r["final_loss_hi"],
                    }
                ),
            ]
            for r in rows
        ]
    # clip_rows keeps the order of the entries; conditions repeat per lr.
    rows = clip_rows(results)
    flags = {id(e): r["recommended"] for e, r in zip(entries, rows, strict=True)}
    lrs = {repr(e.get("lr")) for e in entries}
    cols: list[tuple[str, Any]] = [
        (
            "condition",
            lambda e: _entry_label(e) + (" (recommended)" if flags[id(e)] else ""),
        ),
    ]
    if len(lrs) > 1:
        cols.append(("lr", lambda e: _fmt(e.get("lr"))))
    if any("length" in e for e in entries):
        cols.append(("T", lambda e: _fmt(e.get("length"))))
    if any("success_rate" in e for e in entries):
        cols.append(("success (95% interval)", _success_text))
        cols.append(
            ("steps to success, median", lambda e: _fmt(e.get("steps_to_success")))
        )
        cols.append(("final loss / chance", lambda e: _fmt(e.get("final_loss_ratio"))))
    cols.append(("diverged", _diverged_text))
    cols.append(
        ("final loss, median (10% to 90%)", lambda e: _spread_text(e.get("final_loss")))
    )
    if any(
        _num(e.get("final_accuracy")) == _num(e.get("final_accuracy")) for e in entries
    ):
        cols.append(("final accuracy", lambda e: _spread_text(e.get("final_accuracy"))))
    if any("clip_fraction" in e for e in entries):
        cols.append(("clip fraction", lambda e: _fmt(_num(e.get("clip_fraction")))))
    pct = [
        k
        for k in ("p50", "p90", "p99")
        if any(
            isinstance(e.get("grad_norm_percentiles"), dict)
            and k in e["grad_norm_percentiles"]
            for e in entries
        )
    ]
    if pct:
        cols.append(
            (
                "‖g‖ " + " / ".join(pct),
                lambda e: " / ".join(
                    _fmt((e.get("grad_norm_percentiles") or {}).get(k)) for k in pct
                ),
            )
        )
    return [c for c, _ in cols], [[f(e) for _, f in cols] for e in entries]


def _success_text(e: dict[str, Any]) -> str:
    k, n, iv = e.get("successes"), e.get("seeds"), e.get("success_interval")
    if not isinstance(k, int) or not isinstance(n, int) or not iv:
        return "—"
    return f"{k} of {n} ({iv[0]:.2f} to {iv[1]:.2f})"


def _diverged_text(e: dict[str, Any]) -> str:
    n, k = e.get("seeds"), e.get("diverged_seeds")
    if isinstance(n, int) and isinstance(k, int):
        return f"{k} of {n}"
    return _fmt(_num(e.get("divergence_rate")))


def _recommendation(results: Results) -> str | None:
    text, reason = recommended(results)
    if text is None and not reason:
        return None
    head = f"Recommended clipping: {text}." if text else ""
    return f"{head} {reason}".strip()


# -- HTML ---------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 16px/1.5 Georgia, "Times New Roman", serif; color: #1a1a1a;
  background: #fff; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.5em; border-bottom: 1px solid #ddd;
  padding-bottom: 0.2em; }
p.lede { color: #444; margin-top: 0.2em; }
p.warning { color: #a33; }
table { border-collapse: collapse; font: 14px/1.35 system-ui, sans-serif;
  margin: 0.5em 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: left;
  vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure { margin: 1.6em 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto;
  border: 1px solid #eee; }
figcaption { font-size: 0.95em; color: #333; margin-top: 0.5em; }
figcaption a { font: 13px system-ui, sans-serif; margin-right: 0.6em; }
.recommend { background: #eaf6f1; border-left: 4px solid #009E73;
  padding: 8px 14px; margin: 1em 0; }
pre { background: #f7f7f7; padding: 10px 14px; white-space: pre-wrap;
  font: 13px/1.4 ui-monospace, Menlo, Consolas, monospace; }
.skipped { color: #666; font-size: 0.92em; }
details summary { cursor: pointer; }
"""


def _table_html(
    header: list[str], rows: list[list[str]], *, numeric: bool = True
) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(v)}</td>'
            if numeric and _looks_numeric(v)
            else f"<td>{html.escape(v)}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table>{thead}'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _looks_numeric(text: str) -> bool:
    t = text.split(" (")[0].replace("−", "-").replace("∞", "inf")
    try:
        float(t)
    except ValueError:
        return False
    return True


def _title(results: Results) -> tuple[str, str]:
    exp = results.config.get("experiment") or {}
    name = exp.get("name") or results.directory.resolve().name
    return str(name), str(exp.get("description") or "")


def _provenance_rows(results: Results) -> list[list[str]]:
    rows = []
    for k, v in results.provenance.items():
        if k == "wall_time_s" and isinstance(v, int | float):
            k, v = "wall_time", f"{v:.1f} s"
        rows.append([k.replace("_", " "), _fmt(v)])
    rows.append(["conditions", str(len(results.records))])
    return rows


def _config_text(results: Results) -> str:
    path = results.directory / CONFIG
    if path.exists():
        return path.read_text()
    return json.dumps(results.config, indent=2)


def _html(ctx: _Context) -> str:
    res = ctx.results
    title, desc = _title(res)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gradflow report: {html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if desc:
        parts.append(f'<p class="lede">{html.escape(desc)}</p>')
    missing = unfinished(res)
    if missing:
        parts.append(f'<p class="warning"><strong>{html.escape(missing)}.</strong></p>')
    parts.append(
        f'<p class="lede">{len(res.records)} conditions, '
        f"{len(ctx.figures)} figures. Results in <code>"
        f"{html.escape(str(res.directory))}</code>.</p>"
    )
    text, reason = recommended(res)
    if text or reason:
        head = (
            f"<strong>Recommended clipping: {html.escape(text)}.</strong> "
            if text
            else ""
        )
        parts.append(f'<p class="recommend">{head}{html.escape(reason)}</p>')
    header, rows = _condition_table(res)
    if rows:
        parts.append("<h2>Summary</h2>")
        parts.append(
            '<p class="lede">Medians over seeds. Non-finite values are counted, '
            "not averaged in; — means no seed gave a finite value (e.g. the "
            "half-life of a gradient that does not decay).</p>"
        )
        parts.append(_table_html(header, rows))
        if len(res.records) > _MAX_ROWS:
            parts.append(f"<p>First {_MAX_ROWS} of {len(res.records)} rows.</p>")
    conditions = sections(res)
    if conditions:
        parts.append("<h2>Conditions</h2>")
        for title, said in conditions:
            parts.append(f"<h3>{html.escape(title)}</h3>")
            parts.append("<p>" + " ".join(html.escape(t) for t in said) + "</p>")
    ch, crow = _clip_table(res)
    if crow:
        parts.append("<h2>Clipping thresholds</h2>")
        parts.append(_table_html(ch, crow))
    if ctx.figures:
        parts.append("<h2>Figures</h2>")
    for i, f in enumerate(ctx.figures, 1):
        data = base64.b64encode(f.png).decode("ascii")
        links = " ".join(
            f'<a href="figures/{html.escape(p.name)}">{p.suffix[1:].upper()}</a>'
            for p in f.files
        )
        parts.append(
            f'<figure id="{f.name}"><img src="data:image/png;base64,{data}" '
            f'style="width: {round(f.width_in * _PX_PER_INCH)}px" '
            f'alt="{html.escape(f.name.replace("_", " "))}">'
            f"<figcaption><b>Figure {i}.</b> {html.escape(f.caption)} "
            f"{links}</figcaption></figure>"
        )
    if ctx.skipped:
        items = "".join(
            f"<li><code>{html.escape(n)}</code>: {html.escape(why)}</li>"
            for n, why in ctx.skipped
        )
        parts.append(
            f'<p class="skipped">Figures not drawn:</p><ul class="skipped">{items}</ul>'
        )
    parts.append("<h2>Provenance</h2>")
    parts.append(_table_html([], _provenance_rows(res), numeric=False))
    parts.append("<h2>Configuration</h2>")
    parts.append(
        "<details open><summary><code>config.toml</code></summary>"
        f"<pre>{html.escape(_config_text(res))}</pre></details>"
    )
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


# -- Markdown -----------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(ctx: _Context) -> str:
    res = ctx.results
    title, desc = _title(res)
    out = [f"# {title}", ""]
    if desc:
        out += [desc, ""]
    missing = unfinished(res)
    if missing:
        out += [f"**{missing}.**", ""]
    rec = _recommendation(res)
    if rec:
        out += [f"**{rec}**", ""]
    header, rows = _condition_table(res)
    if rows:
        out += [
            "## Summary",
            "",
            "Medians over seeds.",
            "",
            _table_md(header, rows),
            "",
        ]
    conditions = sections(res)
    if conditions:
        out += ["## Conditions", ""]
        for title, said in conditions:
            out += [f"### {title}", "", " ".join(said), ""]
    ch, crow = _clip_table(res)
    if crow:
        out += ["## Clipping thresholds", "", _table_md(ch, crow), ""]
    if ctx.figures:
        out += ["## Figures", ""]
    for i, f in enumerate(ctx.figures, 1):
        png = next((p for p in f.files if p.suffix == ".png"), None)
        if png is not None:
            out += [f"![{f.name.replace('_', ' ')}](figures/{png.name})", ""]
        others = ", ".join(
            f"[{p.suffix[1:].upper()}](figures/{p.name})" for p in f.files
        )
        out += [f"*Figure {i}.* {f.caption} {others}".rstrip(), ""]
    if ctx.skipped:
        out += [
            "Figures not drawn: " + "; ".join(f"`{n}` ({w})" for n, w in ctx.skipped),
            "",
        ]
    out += ["## Provenance", ""]
    out += [f"- {k}: {v}" for k, v in _provenance_rows(res)]
    out += ["", "## Configuration", "", "```toml", _config_text(res).rstrip(), "```"]
    return "\n".join(out) + "\n"
