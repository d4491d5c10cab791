"""Verdict stability: would a check decide otherwise within the estimator's standard errors?

Sampling estimators (Kernel SHAP, Sampled Shapley, Expected Gradients) write a
standard error per attribution. A draw moves every attribution by its standard
error times a standard normal (seeded per example, as in
tfx_explain.artifacts.resampling) and recomputes each slice's importances; a
check that reads importances is re-run on each draw, and each result says
whether its verdict held ('stable over 20 estimator draws') or how often it
flipped — what another seed of the estimator could have decided.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

from tfx_explain.artifacts import tables
from tfx_explain.artifacts import resampling
from tfx_explain.validation.checks import Check, CheckResult
from tfx_explain.validation.context import AttributionsView, CheckContext

# The stream of the draws' normals, apart from the drift checks' streams.
_STREAM = 6


class DrawnView(AttributionsView):
  """A view whose importances are one estimator draw's (other methods: as written)."""

  def __init__(self, base: AttributionsView, importances: Dict[Tuple[str, str],
                                                              Dict[str, float]]):
    # Shares the base view's summary rather than reading it again.
    self.__dict__.update(base.__dict__)
    self._drawn = importances

  def importance(self, method: str, slice_name: str = 'Overall') -> Dict[str, float]:
    drawn = self._drawn.get((method, slice_name))
    return dict(drawn) if drawn is not None else super().importance(method, slice_name)


def methods_with_standard_errors(view: AttributionsView) -> List[str]:
  """Methods of the view whose table rows carry non-zero standard errors."""
  found = set()
  for frame in tables.per_example_frames(view.uri, view.split):
    errors = tables.standard_error_frame(frame)
    if errors.empty:
      return []
    nonzero = errors.fillna(0.0).abs().to_numpy().sum(axis=1) > 0
    found.update(frame.loc[nonzero, 'method'].unique())
  return [m for m in view.methods if m in found]


def draw_views(view: AttributionsView, methods: Sequence[str], draws: int,
               seed: int = 0) -> List[DrawnView]:
  """`draws` views of the current attributions, each one estimator draw (one table pass)."""
  features = {m: tuple(view.importance(m)) for m in methods}
  plan = resampling.ResamplingPlan(seed, _STREAM, 0, draws, features, tuple(view.slices))
  sums = resampling.accumulate_frames(plan, tables.per_example_frames(view.uri, view.split))
  views = []
  for d in range(draws):
    importances = {}
    for (method, slice_name), s in sums.items():
      if len(s.draw_abs_sum):
        importances[(method, slice_name)] = dict(zip(features[method],
                                                     s.draw_importance()[d].tolist()))
    views.append(DrawnView(view, importances))
  return views


def _uses(result: CheckResult, methods: Sequence[str]) -> bool:
  return bool(result.method) and any(m in str(result.method).split(' vs ') for m in methods)


def annotate(check: Check, context: CheckContext, results: List[CheckResult],
             views: Sequence[DrawnView], methods: Sequence[str]) -> None:
  """Sets `stability` on the results of a check that reads importances, from the draws."""
  if not views or not getattr(check, 'reads_importances', False):
    return
  flips = [0] * len(results)
  for view in views:
    drawn = check.run(dataclasses.replace(context, current=view))
    if len(drawn) != len(results):
      continue
    for i, (result, again) in enumerate(zip(results, drawn)):
      flips[i] += int(again.passed != result.passed)
  for result, flipped in zip(results, flips):
    if result.stability is None and _uses(result, methods):
      result.stability = (f'stable over {len(views)} estimator draws' if not flipped else
                          f'flips in {flipped} of {len(views)} estimator draws')
