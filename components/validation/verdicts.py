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


def draw_views(view: AttributionsView, draws: int, seed: int = 0
               ) -> Tuple[List[DrawnView], List[str]]:
  """`draws` views of the current attributions, each one estimator draw, and the methods
  they move (those with non-zero standard errors); one pass over the table."""
  features = {m: tuple(view.importance(m)) for m in view.methods}
  plan = resampling.ResamplingPlan(seed, _STREAM, 0, draws, features, tuple(view.slices))
  sums = {key: s for key, s in resampling.accumulate_frames(
      plan, tables.per_example_frames(view.uri, view.split)).items() if s.has_errors}
  views = []
  for d in range(draws):
    views.append(DrawnView(view, {(method, slice_name): dict(zip(
        features[method], s.draw_importance()[d].tolist()))
                                  for (method, slice_name), s in sums.items()}))
  methods = [m for m in view.methods if any(key[0] == m for key in sums)]
  return (views if methods else []), methods


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
