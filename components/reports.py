"""Self-contained HTML reports: inline CSS and base64 PNGs, no scripts, fonts or links.

Every data-derived string (feature names, slice values, method keys) is escaped.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any, Dict, List, Optional

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


def attributions_report(summaries: Dict[str, Dict[str, Any]],
                        galleries: Optional[Dict[str, Dict[str, bytes]]] = None) -> str:
  """One page for an Attributions artifact: per split, importances, completeness, slices."""
  from tfx_explain import plots  # pylint: disable=g-import-not-at-top
  sections: List[str] = []
  for split, summary in summaries.items():
    methods = list(summary['methods'])
    overall = summary['slices'][0]['methods']
    rows = []
    for feature in summary['features']:
      cells = ''.join(f'<td>{_number(overall[m]["mean_absolute_attribution"].get(feature))}</td>'
                      for m in methods if m in overall)
      rows.append(f'<tr><td>{escape(feature)}</td>{cells}</tr>')
    head = ''.join(f'<th>{escape(m)}</th>' for m in methods if m in overall)
    completeness = []
    for method, info in summary['methods'].items():
      error = info.get('relative_completeness_error')
      skipped = ', '.join(info.get('skipped_features', [])) or '—'
      completeness.append(
          f'<tr><td>{escape(method)}</td><td>{escape(info.get("value_kind", ""))}</td>'
          f'<td>{_number(error["p50"]) if error else "—"}</td>'
          f'<td>{_number(error["p95"]) if error else "—"}</td><td>{escape(skipped)}</td></tr>')
    slices = []
    for entry in summary['slices']:
      tops = '; '.join(f'{escape(m)}: {escape(", ".join(v["ranking"][:3]))}'
                       for m, v in entry['methods'].items())
      slices.append(f'<tr><td>{escape(entry["slice"])}</td><td>{entry["examples"]}</td>'
                    f'<td>{tops}</td></tr>')
    chart = figure_png(plots.importance_bars(summary))
    gallery = ''
    for method, data in (galleries or {}).get(split, {}).items():
      gallery += (f'<h3>{escape(method)}</h3><img alt="{escape(method)} overlays" '
                  f'src="{png_uri(data)}">')
    speed = summary.get('examples_per_second')
    sections.append(f"""
<h2>Split {escape(split)}</h2>
<p>{summary['examples']} examples explained, {summary.get('skipped_non_finite_rows', 0)} skipped
for NaN/inf inputs; output: {escape(str(summary.get('output_kind', '')))};
{_number(speed)} examples/s.</p>
<img alt="global importance" src="{chart}">
<h3>Mean |attribution| (all examples)</h3>
<table><tr><th>feature</th>{head}</tr>{''.join(rows)}</table>
<h3>Methods</h3>
<table><tr><th>method</th><th>values</th><th>relative completeness error p50</th>
<th>p95</th><th>skipped features</th></tr>{''.join(completeness)}</table>
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
