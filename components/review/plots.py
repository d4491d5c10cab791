"""Plots of attributions; each returns a matplotlib Figure and works headless.

    from tfx_explain import plots
    plots.importance_bars(summary)                       # global importance per method
    plots.beeswarm(frame, 'kernel_shap')                 # per-example spread per feature
    plots.waterfall(frame, 'kernel_shap', example_index=3)
    plots.method_comparison(summary, 'integrated_gradients', 'kernel_shap')
    plots.baseline_comparison(current_summary, baseline_summary, 'kernel_shap')
    plots.image_overlays(images, maps)
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from tfx_explain.artifacts import tables
from tfx_explain.artifacts.summary import Summary


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  if matplotlib.get_backend().lower() not in ('agg', 'module://matplotlib_inline.backend_inline'):
    matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def importance_bars(summary: Summary, methods: Optional[Sequence[str]] = None,
                    slice_name: str = 'Overall', normalize: bool = True):
  """Mean |attribution| per feature, one bar group per method (shares when normalize)."""
  plt = _pyplot()
  methods = list(methods or summary.method_names)
  features = list(summary.features)
  figure, ax = plt.subplots(figsize=(7, 0.45 * len(features) + 1.5))
  height = 0.8 / len(methods)
  for k, method in enumerate(methods):
    values = summary.importance(method, slice_name)
    row = np.array([values.get(f, np.nan) for f in features])
    if normalize and np.nansum(row) > 0:
      row = row / np.nansum(row)
    ax.barh(np.arange(len(features)) + k * height, row, height=height, label=method)
  ax.set_yticks(np.arange(len(features)) + 0.4 - height / 2)
  ax.set_yticklabels(features)
  ax.invert_yaxis()
  ax.set_xlabel('share of mean |attribution|' if normalize else 'mean |attribution|')
  ax.set_title(f'Global importance — {slice_name}')
  ax.legend(fontsize=8)
  figure.tight_layout()
  return figure


def beeswarm(frame, method: str, features: Optional[Sequence[str]] = None, max_points: int = 2000,
             seed: int = 0):
  """Per-example attributions per feature, jittered, coloured by sign."""
  plt = _pyplot()
  rows = frame[frame['method'] == method]
  if rows.empty:
    raise KeyError(f'Method {method!r} not in the table; methods: {sorted(set(frame["method"]))}.')
  if features is None:
    features = [c for c in tables.feature_columns(frame) if rows[c].notna().any()]
    features.sort(key=lambda c: -rows[c].abs().mean())
  rng = np.random.default_rng(seed)
  figure, ax = plt.subplots(figsize=(7, 0.5 * len(features) + 1.5))
  for position, feature in enumerate(features):
    values = rows[feature].dropna().values
    if len(values) > max_points:
      values = rng.choice(values, max_points, replace=False)
    jitter = rng.uniform(-0.3, 0.3, len(values))
    ax.scatter(values, position + jitter, s=6, alpha=0.6,
               c=np.where(values >= 0, '#d62728', '#1f77b4'))
  ax.axvline(0, color='#888', lw=0.8)
  ax.set_yticks(range(len(features)))
  ax.set_yticklabels(features)
  ax.invert_yaxis()
  ax.set_xlabel(f'{method} attribution')
  ax.set_title(f'Per-example attributions ({len(rows)} examples)')
  figure.tight_layout()
  return figure


def waterfall(frame, method: str, example_index: int, max_features: int = 12):
  """One example: baseline prediction, each feature's step, the prediction."""
  plt = _pyplot()
  rows = frame[(frame['method'] == method) & (frame['example_index'] == example_index)]
  if rows.empty:
    raise KeyError(f'No row for method {method!r} and example {example_index}.')
  row = rows.iloc[0]
  contributions = {c: row[c] for c in tables.feature_columns(frame) if not np.isnan(row[c])}
  ordered = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))[:max_features]
  start = row['baseline_prediction'] if not np.isnan(row['baseline_prediction']) else 0.0
  figure, ax = plt.subplots(figsize=(7, 0.45 * len(ordered) + 2))
  level = start
  for k, (feature, value) in enumerate(ordered):
    ax.barh(k, value, left=level, color='#d62728' if value >= 0 else '#1f77b4')
    ax.text(level + value, k, f' {value:+.3g}', va='center', fontsize=8)
    level += value
  ax.axvline(start, color='#888', ls='--', lw=0.8, label=f'baseline {start:.3g}')
  ax.axvline(row['prediction'], color='#333', lw=0.8, label=f'prediction {row["prediction"]:.3g}')
  ax.set_yticks(range(len(ordered)))
  ax.set_yticklabels([f for f, _ in ordered])
  ax.invert_yaxis()
  ax.legend(fontsize=8)
  ax.set_title(f'{method}: example {example_index}, class {int(row["target"])}')
  figure.tight_layout()
  return figure


def _scatter_compare(a: Dict[str, float], b: Dict[str, float], label_a: str, label_b: str,
                     title: str):
  plt = _pyplot()
  from tfx_explain.validation.ranking import spearman  # pylint: disable=g-import-not-at-top
  features = sorted(set(a) & set(b))
  x = np.array([a[f] for f in features])
  y = np.array([b[f] for f in features])
  figure, ax = plt.subplots(figsize=(5.5, 5))
  ax.scatter(x, y)
  for f, xi, yi in zip(features, x, y):
    ax.annotate(f, (xi, yi), fontsize=8, xytext=(3, 3), textcoords='offset points')
  top = max(x.max(initial=0), y.max(initial=0)) * 1.1 or 1.0
  ax.plot([0, top], [0, top], color='#888', lw=0.8)
  ax.set_xlabel(label_a)
  ax.set_ylabel(label_b)
  ax.set_title(f'{title} (Spearman {spearman(x, y):.2f})')
  figure.tight_layout()
  return figure


def method_comparison(summary: Summary, method_a: str, method_b: str,
                      slice_name: str = 'Overall'):
  """Mean |attribution| of two methods, feature by feature."""
  return _scatter_compare(summary.importance(method_a, slice_name),
                          summary.importance(method_b, slice_name), method_a, method_b,
                          f'{method_a} vs {method_b}')


def baseline_comparison(current: Summary, baseline: Summary, method: str,
                        slice_name: str = 'Overall'):
  """Mean |attribution| of the current model against the baseline model's."""
  return _scatter_compare(baseline.importance(method, slice_name),
                          current.importance(method, slice_name), 'baseline model',
                          'current model', f'{method}: current vs baseline')


def image_overlays(images: np.ndarray, maps: np.ndarray, titles: Optional[Sequence[str]] = None,
                   columns: int = 6):
  """Images with their attribution maps overlaid (signed maps in red/blue)."""
  plt = _pyplot()
  n = len(images)
  columns = max(1, min(columns, n))
  lines = int(np.ceil(n / columns))
  figure, axes = plt.subplots(lines, columns, figsize=(2 * columns, 2.2 * lines), squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  for k, ax in enumerate(axes.ravel()[:n]):
    image = np.asarray(images[k], np.float32)
    heat = np.asarray(maps[k], np.float32)
    heat = heat.sum(axis=-1) if heat.ndim == 3 else heat
    ax.imshow(image.mean(axis=-1) if image.ndim == 3 else image, cmap='gray')
    limit = float(np.abs(heat).max()) or 1.0
    signed = heat.min() < 0
    ax.imshow(heat, cmap='RdBu_r' if signed else 'jet', alpha=0.55,
              vmin=-limit if signed else 0, vmax=limit)
    if titles is not None:
      ax.set_title(titles[k], fontsize=8)
  figure.tight_layout()
  return figure
