"""Self-contained HTML reports: inline CSS and base64 PNGs, no scripts, fonts or links.

Every data-derived string (feature names, slice values, method keys) is escaped.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from typing import Any, Dict, List, Optional, Sequence

from tfx_explain.artifacts.summary import Summary

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.muted { color: #666; font-size: 90%; }
.text { line-height: 1.9; margin: 0.4em 0 1em; }
.text span { padding: 1px 3px; border-radius: 3px; }
"""


def figure_png(figure) -> str:
  """A matplotlib figure as a data: URI (and closes it)."""
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=80)
  plt.close(figure)
  return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def png_uri(data: bytes) -> str:
  return 'data:image/png;base64,' + base64.b64encode(data).decode('ascii')


def _number(value) -> str:
  if value is None:
    return '—'
  if isinstance(value, float):
    return escape(f'{value:.4g}')
  return escape(str(value))


def _with_error(entry, feature: str) -> str:
  """Mean |attribution|, with ± its standard error for sampling estimators."""
  value = _number(entry.mean_absolute_attribution.get(feature))
  error = entry.mean_standard_error.get(feature)
  return value if error is None else f'{value} ± {_number(error)}'


def highlighted_text(tokens: Sequence[str], scores: Sequence[float]) -> str:
  """A text's words, each on a background by its score: green raises the explained output,
  red lowers it, stronger for larger |score| (relative to the text's largest). Each word's
  score is its tooltip."""
  scale = max([abs(float(s)) for s in scores if math.isfinite(float(s))] or [0.0]) or 1.0
  spans = []
  for token, score in zip(tokens, scores):
    score = float(score)
    strength = min(1.0, abs(score) / scale) if math.isfinite(score) else 0.0
    color = '0, 150, 60' if score >= 0 else '210, 40, 40'
    spans.append(f'<span style="background: rgba({color}, {0.75 * strength:.3f})" '
                 f'title="{escape(f"{score:+.4g}")}">{escape(token)}</span>')
  return '<p class="text">' + ' '.join(spans) + '</p>'


def _words_section(summary: Summary, texts) -> str:
  """Top words per token method and slice, and the first examples highlighted."""
  words, examples = texts or ({}, {})
  if not words and not examples:
    return ''
  parts = ['<h3>Words</h3><p class="muted">Mean |score| of each word over its occurrences '
           '(words seen at least 2 times), per token method.</p>']
  for method, by_slice in words.items():
    rows = []
    for slice_name, entries in by_slice.items():
      cells = ', '.join(f'{escape(w)} ({_number(v)}, {n}×)' for w, v, n in entries)
      rows.append(f'<tr><td>{escape(slice_name)}</td><td>{cells}</td></tr>')
    parts.append(f'<h4>{escape(method)}</h4><table><tr><th>slice</th>'
                 f'<th>top words (mean |score|, occurrences)</th></tr>{"".join(rows)}</table>')
  for method, rows in examples.items():
    parts.append(f'<h4>{escape(method)}: first examples</h4><p class="muted">Green raises the '
                 'explained output, red lowers it; hover a word for its score.</p>')
    for index, prediction, tokens, scores in rows:
      parts.append(f'<div class="muted">example {int(index)}, output {_number(prediction)}'
                   f'</div>{highlighted_text(tokens, scores)}')
  return ''.join(parts)


def attributions_report(summaries: Dict[str, Summary],
                        galleries: Optional[Dict[str, Dict[str, bytes]]] = None,
                        texts: Optional[Dict[str, Any]] = None) -> str:
  """One page for an Attributions artifact: per split, importances, completeness, slices;
  for text models (`texts`, per split: top words and highlighted examples) their words."""
  from tfx_explain.review import plots  # pylint: disable=g-import-not-at-top
  sections: List[str] = []
  for split, summary in summaries.items():
    methods = summary.method_names
    overall = summary.overall.methods
    rows = []
    for feature in summary.features:
      cells = ''.join(f'<td>{_with_error(overall[m], feature)}</td>'
                      for m in methods if m in overall)
      rows.append(f'<tr><td>{escape(feature)}</td>{cells}</tr>')
    head = ''.join(f'<th>{escape(m)}</th>' for m in methods if m in overall)
    completeness = []
    for method, info in summary.methods.items():
      error = info.relative_completeness_error
      skipped = ', '.join(info.skipped_features) or '—'
      steps = info.steps
      completeness.append(
          f'<tr><td>{escape(method)}</td><td>{escape(info.value_kind)}</td>'
          f'<td>{_number(error.p50) if error else "—"}</td>'
          f'<td>{_number(error.p95) if error else "—"}</td>'
          f'<td>{f"{_number(steps.p50)} / {_number(steps.max)}" if steps else "—"}</td>'
          f'<td>{escape(skipped)}</td></tr>')
    slices = []
    for entry in summary.slices:
      tops = '; '.join(f'{escape(m)}: {escape(", ".join(v.ranking[:3]))}'
                       for m, v in entry.methods.items())
      slices.append(f'<tr><td>{escape(entry.slice)}</td><td>{entry.examples}</td>'
                    f'<td>{tops}</td></tr>')
    chart = figure_png(plots.importance_bars(summary))
    gallery = ''
    for method, data in (galleries or {}).get(split, {}).items():
      gallery += (f'<h3>{escape(method)}</h3><img alt="{escape(method)} overlays" '
                  f'src="{png_uri(data)}">')
    speed = summary.examples_per_second
    sections.append(f"""
<h2>Split {escape(split)}</h2>
<p>{summary.examples} examples explained, {summary.skipped_non_finite_rows} skipped
for NaN/inf inputs; output: {escape(summary.output_kind)};
{_number(speed)} examples/s.</p>
<img alt="global importance" src="{chart}">
<h3>Mean |attribution| (all examples)</h3>
<p class="muted">± the mean per-example standard error of sampling estimators.</p>
<table><tr><th>feature</th>{head}</tr>{''.join(rows)}</table>
<h3>Methods</h3>
<table><tr><th>method</th><th>values</th><th>relative completeness error p50</th>
<th>p95</th><th>evaluations per example, median / max</th><th>skipped features</th></tr>
{''.join(completeness)}</table>
<h3>Slices</h3>
<table><tr><th>slice</th><th>examples</th><th>top features</th></tr>{''.join(slices)}</table>
{_words_section(summary, (texts or {}).get(split))}
{gallery}""")
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Attributions</title>
<style>{_STYLE}</style></head>
<body><h1>Feature attributions</h1>
<p class="muted">Written by tfx-explain AttributionGen. Values are mean absolute attributions
in the model's output units (probability, logit or regression output).</p>
{''.join(sections)}
</body></html>
"""


_BAR_WIDTH, _BAR_HEIGHT = 240, 22


def _bar_scale(result: Dict[str, Any]):
  """The axis a result's bar is drawn on: [0, 1] (or [-1, 1]) for similarities, else fitted."""
  numbers = [v for v in (result.get('value'), result.get('lower'), result.get('upper'),
                         result.get('threshold')) if isinstance(v, (int, float))]
  if not numbers:
    return None
  low, high = min(numbers), max(numbers)
  if low >= -1.0 and high <= 1.0:
    return (-1.0 if low < 0 else 0.0), 1.0
  span = (high - low) or abs(high) or 1.0
  return min(0.0, low - 0.1 * span), high + 0.1 * span


def interval_bar(result: Dict[str, Any]) -> str:
  """Inline SVG: the interval (or the value) as a bar, the estimate as a tick, the
  threshold as a red line; no scripts. Empty for results without numbers."""
  scale = _bar_scale(result)
  if scale is None:
    return ''
  low, high = scale
  width = _BAR_WIDTH - 8

  def x(value):
    return 4 + width * (min(max(value, low), high) - low) / ((high - low) or 1.0)

  parts = [f'<line x1="4" y1="{_BAR_HEIGHT - 4}" x2="{4 + width}" y2="{_BAR_HEIGHT - 4}" '
           'stroke="#bbb"/>']
  colour = '#1b7f3b' if result['passed'] else '#b3261e'
  lower, upper, value = result.get('lower'), result.get('upper'), result.get('value')
  if lower is not None and upper is not None:
    left, right = x(lower), x(upper)
    parts.append(f'<rect class="interval" x="{left:.1f}" y="5" width="{max(right - left, 1.5):.1f}" '
                 f'height="10" fill="{colour}" fill-opacity="0.35" stroke="{colour}">'
                 f'<title>{_number(lower)} to {_number(upper)}</title></rect>')
  if value is not None:
    parts.append(f'<line class="estimate" x1="{x(value):.1f}" y1="3" x2="{x(value):.1f}" '
                 f'y2="17" stroke="{colour}" stroke-width="2"/>')
  threshold = result.get('threshold')
  if isinstance(threshold, (int, float)) and result.get('comparison') in ('<=', '>='):
    parts.append(f'<line class="threshold" x1="{x(threshold):.1f}" y1="0" '
                 f'x2="{x(threshold):.1f}" y2="{_BAR_HEIGHT}" stroke="#d00" stroke-width="2" '
                 'stroke-dasharray="3,2"/>')
  parts.append(f'<text x="4" y="{_BAR_HEIGHT}" font-size="7" fill="#666">{_number(low)}</text>'
               f'<text x="{width - 10}" y="{_BAR_HEIGHT}" font-size="7" fill="#666">'
               f'{_number(high)}</text>')
  return (f'<svg class="bar" width="{_BAR_WIDTH}" height="{_BAR_HEIGHT + 2}" '
          f'viewBox="0 0 {_BAR_WIDTH} {_BAR_HEIGHT + 2}" role="img" '
          f'aria-label="interval and threshold">{"".join(parts)}</svg>')


def _curve_svg(curves: Dict[str, List[float]]) -> str:
  """Small inline SVG of named curves on one axis (faithfulness, randomisation stages)."""
  series = {k: [float(v) for v in vs] for k, vs in curves.items()
            if isinstance(vs, list) and len(vs) > 1 and all(isinstance(v, (int, float))
                                                           for v in vs)}
  if not series:
    return ''
  values = [v for vs in series.values() for v in vs]
  low, high = min(values), max(values)
  span = (high - low) or 1.0
  width, height = 160, 60
  palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728']
  lines, legend = [], []
  for i, (name, vs) in enumerate(series.items()):
    points = ' '.join(f'{4 + (width - 8) * j / (len(vs) - 1):.1f},'
                      f'{height - 4 - (height - 8) * (v - low) / span:.1f}'
                      for j, v in enumerate(vs))
    lines.append(f'<polyline class="curve" points="{points}" fill="none" '
                 f'stroke="{palette[i % len(palette)]}" stroke-width="1.5"/>')
    legend.append(f'<span style="color:{palette[i % len(palette)]}">&#9632; '
                  f'{escape(name)}</span>')
  return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
          f'{"".join(lines)}</svg><br><span class="muted">{" ".join(legend)}</span>')


def _interval_text(result: Dict[str, Any]) -> str:
  lower, upper = result.get('lower'), result.get('upper')
  if lower is None or upper is None:
    return '—'
  confidence = result.get('confidence')
  level = f' ({confidence:.0%})' if isinstance(confidence, float) else ''
  return f'[{lower:.3g}, {upper:.3g}]{escape(level)}'


def validation_html(report: Dict[str, Any]) -> str:
  """A self-contained page: no scripts, fonts or links; every data string escaped.

  Each check with a number shows it as a bar: the interval (when the check has
  one), the estimate, and its threshold as a red dashed line.
  """
  verdict = 'BLESSED' if report['blessed'] else 'NOT BLESSED'
  colour = '#1b7f3b' if report['blessed'] else '#b3261e'
  rows = []
  for result in report['checks']:
    status = 'pass' if result['passed'] else 'FAIL'
    decided = result.get('decided_on', 'estimate')
    details = result.get('details') or {}
    curves = details.get('curves') if isinstance(details.get('curves'), dict) else {}
    rows.append(
        f'<tr class="{status.lower()}"><td>{status}</td><td>{_number(result["check"])}</td>'
        f'<td>{_number(result["slice"])}</td><td>{_number(result.get("examples"))}</td>'
        f'<td>{_number(result["method"])}</td>'
        f'<td>{_number(result["feature"])}</td><td>{_number(result["value"])}</td>'
        f'<td>{_interval_text(result)}</td>'
        f'<td>{_number(result["comparison"])} {_number(result["threshold"])}'
        f'{"" if decided == "estimate" else f" (on the {escape(decided)} bound)"}</td>'
        f'<td>{interval_bar(result)}</td>'
        f'<td>{_number(result.get("stability"))}</td>'
        f'<td>{_number(result["message"])}{_curve_svg(curves)}</td></tr>')
  inputs = ''.join(f'<li>{escape(str(k))}: {escape(str(v))}</li>'
                   for k, v in sorted(report.get('inputs', {}).items()))
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Explanation validation: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
h1 {{ color: {colour}; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.fail td {{ background: #fde7e9; }}
tr.pass td:first-child {{ color: #1b7f3b; }}
.muted {{ color: #666; font-size: 85%; }}
</style></head>
<body><h1>Explanation validation: {verdict}</h1>
<p>{sum(1 for r in report['checks'] if r['passed'])} of {len(report['checks'])} checks passed.</p>
<ul>{inputs}</ul>
<p class="muted">Bars: the shaded box is the confidence interval, the solid tick the
estimate, the red dashed line the threshold; a check with an interval decides on the bound
it names.</p>
<table><tr><th>result</th><th>check</th><th>slice</th><th>examples</th><th>method</th>
<th>feature</th><th>value</th><th>interval</th><th>threshold</th><th>interval vs threshold</th>
<th>verdict stability</th><th>what</th></tr>
{''.join(rows)}
</table></body></html>
"""
