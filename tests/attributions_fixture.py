"""Attributions artifacts built for a test, written by the same writers AttributionGen uses."""

import os

import numpy as np

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tfma
from tfx_explain.artifacts.statistics import SliceStatistics
from tfx_explain.artifacts.summary import SummaryPlan, build_summary


def _slice_key(name):
  return () if name == 'Overall' else tuple(tuple(part.split('=')) for part in name.split('&'))


def _quantiles(p95):
  """101 error quantiles with median p95/2, 95th percentile p95 and maximum 2*p95."""
  return np.interp(np.arange(101), [0, 50, 95, 100], [0.0, p95 / 2, p95, 2 * p95]).tolist()


def write_attributions(uri, importance, relative_p95=0.01, skipped=0, features=None,
                       slices=('Overall', 'region=north'), examples=None, split='eval',
                       value_kind='attribution'):
  """An Attributions folder whose slices have exactly the mean |attribution| given.

  importance: method -> {feature: mean |attribution|}, the same in every slice,
  or method -> {slice: {feature: value}} (slices missing fall back to Overall).
  Features a method has no value for are unattributed. examples: slice -> count
  (default 100 for Overall, 50 for the others).
  """
  methods = list(importance)
  features = list(features or next(iter(importance.values())).get('Overall',
                                                                  next(iter(importance.values()))))
  examples = examples or {}
  statistics, quantiles = {}, {}
  for slice_name in slices:
    n = examples.get(slice_name, 100 if slice_name == 'Overall' else 50)
    for method in methods:
      values = importance[method]
      if 'Overall' in values:
        values = values.get(slice_name, values['Overall'])
      given = np.array([f in values for f in features])
      mean = np.array([values.get(f, 0.0) for f in features], np.float64)
      statistics[(_slice_key(slice_name), method)] = SliceStatistics(
          examples=n, count=np.where(given, n, 0), total=mean * n, total_abs=np.abs(mean) * n,
          relative_error_sum=relative_p95 * n / 2, prediction_sum=0.5 * n)
      quantiles[(method, slice_name, 'relative')] = _quantiles(relative_p95)
  plan = SummaryPlan(
      split=split, features=tuple(features), output_kind='probability', target='predicted',
      methods=tuple(methods), method_configs=tuple({'method': m} for m in methods),
      skipped_features=tuple(() for _ in methods), value_kinds=tuple(value_kind for _ in methods),
      reference_split='train')
  summary = build_summary(plan, statistics, quantiles, skipped, compute_seconds=1.0)
  split_dir = layout.split_uri(str(uri), split)
  os.makedirs(split_dir, exist_ok=True)
  summary.write(split_dir)
  tfma.write_attributions(split_dir, statistics, features)
  return str(uri)
