"""Self-contained HTML reports: inline CSS and base64 PNGs, no scripts, fonts or links.

Every data-derived string (feature names, slice values, method keys) is escaped.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any, Dict, List, Optional

from tfx_explain.artifacts.summary import Summary

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.muted { color: #666; font-size: 90%; }
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


def attributions_report(summaries: Dict[str, Summary],
                        galleries: Optional[Dict[str, Dict[str, bytes]]] = None) -> str:
  """One page for an Attributions artifact: per split, importances, completeness, slices."""
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


def validation_html(report: Dict[str, Any]) -> str:
  """A self-contained page: no scripts, fonts or links; every data string escaped."""
  verdict = 'BLESSED' if report['blessed'] else 'NOT BLESSED'
  colour = '#1b7f3b' if report['blessed'] else '#b3261e'
  rows = []
  for result in report['checks']:
    status = 'pass' if result['passed'] else 'FAIL'
    rows.append(
        f'<tr class="{status.lower()}"><td>{status}</td><td>{_number(result["check"])}</td>'
        f'<td>{_number(result["slice"])}</td><td>{_number(result["method"])}</td>'
        f'<td>{_number(result["feature"])}</td><td>{_number(result["value"])}</td>'
        f'<td>{_number(result["comparison"])} {_number(result["threshold"])}</td>'
        f'<td>{_number(result["message"])}</td></tr>')
  inputs = ''.join(f'<li>{escape(str(k))}: {escape(str(v))}</li>'
                   for k, v in sorted(report.get('inputs', {}).items()))
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Explanation validation: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
h1 {{ color: {colour}; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.fail td {{ background: #fde7e9; }}
tr.pass td:first-child {{ color: #1b7f3b; }}
</style></head>
<body><h1>Explanation validation: {verdict}</h1>
<p>{sum(1 for r in report['checks'] if r['passed'])} of {len(report['checks'])} checks passed.</p>
<ul>{inputs}</ul>
<table><tr><th>result</th><th>check</th><th>slice</th><th>method</th><th>feature</th>
<th>value</th><th>threshold</th><th>what</th></tr>
{''.join(rows)}
</table></body></html>
"""
