"""Attribution drift and skew, per slice, with bootstrap confidence intervals.

    AttributionDriftCheck   this model vs the last blessed model, on the same split
    AttributionSkewCheck    this model's serving (eval) split vs its training split

Statistics of the global ranking (mean |attribution| per feature):
  ndcg            nDCG@k of the current ranking with the reference importances as
                  relevance (SageMaker Clarify's drift statistic; its line is 0.9)
  spearman        rank correlation of the two importance vectors
  top_k_overlap   share of the top k features the two have in common
and of each feature's attribution distribution:
  distance        Wasserstein-1 distance between the two distributions of the
                  feature's signed attributions, over the reference's total mean
                  |attribution| (so 0.1 means a tenth of the total attribution moved)

Each comes with a Poisson-bootstrap interval over the examples of both sides
(resampled independently; deterministic for a seed); a distance's estimate and
interval are corrected for its sampling bias (the bootstrap's own measure of it;
the plug-in value is in details), and the check decides on
the bound it names: `AttributionDriftCheck('ndcg', k=5, threshold=0.9,
decide_on='upper')` fails when the upper 95 % bound of nDCG@5 is below 0.9, so a
small slice's noise alone never fails it. For sampling estimators the verdict is
re-taken over estimator draws (attributions moved by their standard errors) and
the result says whether it flips.
"""

from __future__ import annotations

from typing import ClassVar, List, Optional, Tuple

import numpy as np

from tfx_explain.configurable import ConfigError
from tfx_explain.validation import ranking
from tfx_explain.artifacts import resampling
from tfx_explain.validation.checks import Check, CheckResult
from tfx_explain.validation.context import AttributionsView, CheckContext
from tfx_explain.validators import check_choice, check_int, check_number

SIMILARITIES = ('ndcg', 'spearman', 'top_k_overlap')
STATISTICS = SIMILARITIES + ('distance',)
DEFAULT_THRESHOLDS = {'ndcg': 0.9, 'spearman': 0.8, 'top_k_overlap': 0.5, 'distance': 0.1}
BOUNDS = ('lower', 'upper', 'estimate')
_DESCRIPTIONS = {
    'ndcg': 'nDCG@{k} of the global ranking',
    'spearman': 'Spearman correlation of the global importances',
    'top_k_overlap': 'overlap of the top {k} features',
    'distance': 'attribution distribution distance (W1 / total mean |attribution|)',
}


class _AttributionComparison(Check):
  """Shared by drift and skew: the sides differ, the statistics do not."""
  reference_role: ClassVar[str] = ''

  def _configure(self, owner, method, statistic, threshold, k, decide_on, confidence,
                 per_slice, min_slice_examples, num_bootstrap, estimator_draws, seed, bins,
                 use_beam):
    if not isinstance(method, str) or not method:
      raise ConfigError(f'{owner}: method must be a method key, got {method!r}.')
    self.method = method
    self.statistic = check_choice(owner, 'statistic', statistic, STATISTICS)
    limits = (-1.0, 1.0) if statistic == 'spearman' else (0.0, 1.0 if statistic != 'distance'
                                                          else 1e9)
    self.threshold = (DEFAULT_THRESHOLDS[statistic] if threshold is None else
                      check_number(owner, 'threshold', threshold, *limits))
    self.k = check_int(owner, 'k', k)
    # Similarities fail when even their optimistic bound is below the line;
    # distances when even their optimistic (lower) bound is above it.
    default_bound = 'upper' if statistic in SIMILARITIES else 'lower'
    self.decide_on = check_choice(owner, 'decide_on', decide_on or default_bound, BOUNDS)
    self.confidence = check_number(owner, 'confidence', confidence, 0.5, 1.0, high_open=True)
    self.per_slice = bool(per_slice)
    self.min_slice_examples = check_int(owner, 'min_slice_examples', min_slice_examples)
    self.num_bootstrap = check_int(owner, 'num_bootstrap', num_bootstrap, minimum=20)
    self.estimator_draws = check_int(owner, 'estimator_draws', estimator_draws, minimum=0)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.bins = check_int(owner, 'bins', bins, minimum=2)
    if use_beam not in (None, True, False):
      raise ConfigError(f'{owner}: use_beam must be None (by table size), True or False, '
                        f'got {use_beam!r}.')
    self.use_beam = use_beam

  @property
  def _similarity(self) -> bool:
    return self.statistic in SIMILARITIES

  def _reference(self, context: CheckContext) -> Optional[AttributionsView]:
    raise NotImplementedError

  def _reference_missing(self) -> str:
    raise NotImplementedError

  def validate(self, context):
    self._require_method(context.current, self.method)
    reference = self._reference(context)
    if reference is None:
      return
    self._require_method(reference, self.method, f'method (in the {self.reference_role})')
    shared = self._features(context.current, reference)
    if len(shared) < 2:
      raise ConfigError(f'{type(self).__name__}: {self.method!r} attributes {len(shared)} '
                        f'feature(s) on both sides ({shared}); rankings need at least 2.')

  def _features(self, current: AttributionsView, reference: AttributionsView) -> List[str]:
    before = reference.importance(self.method)
    return [f for f in current.importance(self.method) if f in before]

  def _slices(self, current, reference) -> List[str]:
    if not self.per_slice:
      return [resampling.OVERALL]
    return [s for s in current.slices if s in reference.slices]

  def run(self, context):
    reference = self._reference(context)
    if reference is None:
      return [CheckResult(self.name, True, None, self.threshold, self._comparison,
                          method=self.method, message=self._reference_missing())]
    features = tuple(self._features(context.current, reference))
    slices = tuple(self._slices(context.current, reference))
    edges = None
    if self.statistic == 'distance':
      ranges = [context.value_ranges(view, {self.method: features})
                for view in (context.current, reference)]
      edges = resampling.histogram_edges(ranges, self.bins)
    plans = [resampling.ResamplingPlan(self.seed, stream, self.num_bootstrap,
                                       self.estimator_draws, {self.method: features}, slices,
                                       edges) for stream in (0, 2)]
    current_sums = context.resampled_sums(context.current, plans[0], self.use_beam)
    reference_sums = context.resampled_sums(reference, plans[1], self.use_beam)
    results = []
    for slice_name in slices:
      key = (self.method, slice_name)
      if key not in current_sums or key not in reference_sums:
        continue
      now, before = current_sums[key], reference_sums[key]
      examples = min(now.examples, before.examples)
      if examples < self.min_slice_examples:
        results.append(CheckResult(
            self.name, True, None, self.threshold, self._comparison, slice_name, self.method,
            message=f'not judged: {examples} examples < min_slice_examples '
                    f'{self.min_slice_examples}', examples=examples))
        continue
      results.extend(self._judge(slice_name, features, now, before,
                                 None if edges is None else edges[self.method]))
    return results

  @property
  def _comparison(self) -> str:
    return '>=' if self._similarity else '<='

  def _statistic(self, now: np.ndarray, before: np.ndarray, now_hist=None, before_hist=None,
                 edges=None) -> np.ndarray:
    """[W] similarities, or [W, F] distances, of W importance (or histogram) pairs."""
    if self.statistic == 'ndcg':
      return ranking.ndcg_at_k(now, before, self.k)
    if self.statistic == 'spearman':
      return ranking.spearman_rows(now, before)
    if self.statistic == 'top_k_overlap':
      return ranking.top_k_overlap(now, before, self.k)
    scale = np.maximum(before.sum(axis=-1, keepdims=True), 1e-12)
    return ranking.histogram_distance(now_hist, before_hist, edges) / scale

  def _judge(self, slice_name: str, features: Tuple[str, ...], now: resampling.ResampledSums,
             before: resampling.ResampledSums, edges) -> List[CheckResult]:
    distance = self.statistic == 'distance'
    point = self._statistic(now.importance()[None], before.importance()[None],
                            now.histogram[None] if distance else None,
                            before.histogram[None] if distance else None, edges)[0]
    replicates = self._statistic(
        now.replicate_importance(), before.replicate_importance(),
        now.replicate_histogram if distance else None,
        before.replicate_histogram if distance else None, edges)
    # A distance check decides on every feature at once: each feature's interval is
    # widened (Bonferroni) so the check, not each feature, errs at 1 - confidence.
    confidence = (1.0 - (1.0 - self.confidence) / len(features)) if distance else \
        self.confidence
    estimate, lower, upper = self._bias_corrected(point, replicates, confidence)
    draws = None
    if now.has_errors or before.has_errors:
      draws = self._statistic(now.draw_importance(), before.draw_importance(),
                              now.draw_histogram if distance else None,
                              before.draw_histogram if distance else None, edges)
      draws = draws - draws.mean(axis=0) + estimate   # the spread of the draws, not their bias
    what = _DESCRIPTIONS[self.statistic].format(k=min(self.k, len(features)))
    if not distance:
      return [self._result(slice_name, None, float(estimate), float(lower), float(upper),
                           None if draws is None else draws, now, before, what, float(point),
                           confidence)]
    return [self._result(slice_name, feature, float(estimate[j]), float(lower[j]),
                         float(upper[j]), None if draws is None else draws[:, j], now, before,
                         what, float(point[j]), confidence) for j, feature in enumerate(features)]

  def _bias_corrected(self, point, replicates, confidence):
    """The estimate and its interval, within the statistic's range.

    Distances are biased by sampling: two samples of one distribution are a
    positive distance apart. The bootstrap measures that bias (the replicates'
    mean minus the sample's value); estimate and interval (the basic bootstrap's)
    are moved back by it, so a small slice is not judged drifted for its size
    alone. Rank similarities take few values (a top-2 overlap is 0, 0.5 or 1), so
    a shift by their mean would move the interval off every value they can take:
    they keep the plug-in estimate and the percentile interval. Either interval
    is widened to hold its estimate.
    """
    alpha = (1.0 - confidence) / 2.0
    low, high = (-1.0, 1.0) if self.statistic == 'spearman' else (
        (0.0, 1.0) if self._similarity else (0.0, np.inf))
    if self._similarity:
      estimate = point
      lower, upper = np.quantile(replicates, [alpha, 1.0 - alpha], axis=0)
    else:
      bias = replicates.mean(axis=0) - point
      estimate = np.clip(point - bias, low, high)
      lower, upper = np.quantile(replicates - 2.0 * bias, [alpha, 1.0 - alpha], axis=0)
    lower, upper = np.minimum(lower, estimate), np.maximum(upper, estimate)
    return estimate, np.clip(lower, low, high), np.clip(upper, low, high)

  def _passes(self, decisive: float) -> bool:
    return decisive >= self.threshold if self._similarity else decisive <= self.threshold

  def _result(self, slice_name, feature, point, lower, upper, draws, now, before, what,
              plug_in, confidence):
    decisive = {'lower': lower, 'upper': upper}.get(self.decide_on, point)
    passed = self._passes(decisive)
    stability = None
    if draws is not None:
      # The interval moves with the estimate: re-decide on each draw's shifted bound.
      flips = int(sum(self._passes(decisive + (d - point)) != passed for d in draws))
      stability = (f'stable over {len(draws)} estimator draws' if not flips else
                   f'flips in {flips} of {len(draws)} estimator draws')
    bound = 'estimate' if self.decide_on == 'estimate' else (
        f'{self.decide_on} {confidence:.1%} bound')
    verb = 'below' if self._similarity else 'above'
    message = (f'{what} vs the {self.reference_role}: {point:.3f} '
               f'[{lower:.3f}, {upper:.3f}] at {confidence:.1%}, {now.examples} vs '
               f'{before.examples} examples; fails when the {bound} is {verb} '
               f'{self.threshold:g}')
    return CheckResult(
        self.name, passed, point, self.threshold, self._comparison, slice_name, self.method,
        feature, message, lower=lower, upper=upper, confidence=confidence,
        decided_on=self.decide_on, examples=min(now.examples, before.examples),
        stability=stability, details={'statistic': self.statistic, 'k': self.k,
                                      'plug_in': plug_in,
                                      'current_examples': now.examples,
                                      'reference_examples': before.examples})


class AttributionDriftCheck(_AttributionComparison):
  """This model's attributions vs the last blessed model's, per slice, with intervals.

      AttributionDriftCheck(method='kernel_shap', statistic='ndcg', k=5, threshold=0.9)

  Passes without judging when there is no baseline yet (the first blessed run).
  baseline_name: what the baseline is, for the report (after PrunedModelTrainer the
  baseline attributions are the teacher's: 'teacher (base model)').
  """
  name = 'attribution_drift'

  @property
  def reference_role(self) -> str:
    return self.baseline_name

  def __init__(self, method: str = 'integrated_gradients', statistic: str = 'ndcg',
               threshold: Optional[float] = None, k: int = 5, decide_on: Optional[str] = None,
               confidence: float = 0.95, per_slice: bool = True, min_slice_examples: int = 10,
               num_bootstrap: int = 500, estimator_draws: int = 20, seed: int = 0,
               bins: int = 32, use_beam: Optional[bool] = None,
               baseline_name: str = 'last blessed model'):
    if not isinstance(baseline_name, str) or not baseline_name:
      raise ConfigError(f'AttributionDriftCheck: baseline_name must name the baseline, got '
                        f'{baseline_name!r}.')
    self.baseline_name = baseline_name
    self._configure('AttributionDriftCheck', method, statistic, threshold, k, decide_on,
                    confidence, per_slice, min_slice_examples, num_bootstrap, estimator_draws,
                    seed, bins, use_beam)

  def _reference(self, context):
    return context.baseline

  def _reference_missing(self):
    return ('no baseline attributions (first run, or no blessed model yet): drift passes by '
            'definition')


class AttributionSkewCheck(_AttributionComparison):
  """Training/serving skew: the same model's attributions on the validated (serving)
  split vs on its training split, per slice, with intervals.

  The training split must be explained in the same Attributions artifact
  (AttributionConfig(splits=['eval', 'train'])).
  """
  name = 'attribution_skew'
  reference_role = 'training split'

  def __init__(self, method: str = 'integrated_gradients', statistic: str = 'ndcg',
               threshold: Optional[float] = None, k: int = 5, decide_on: Optional[str] = None,
               training_split: str = 'train', confidence: float = 0.95,
               per_slice: bool = True, min_slice_examples: int = 10, num_bootstrap: int = 500,
               estimator_draws: int = 20, seed: int = 0, bins: int = 32,
               use_beam: Optional[bool] = None):
    if not isinstance(training_split, str) or not training_split:
      raise ConfigError(f'AttributionSkewCheck: training_split must be a split name, got '
                        f'{training_split!r}.')
    self.training_split = training_split
    self._configure('AttributionSkewCheck', method, statistic, threshold, k, decide_on,
                    confidence, per_slice, min_slice_examples, num_bootstrap, estimator_draws,
                    seed, bins, use_beam)

  def _reference(self, context):
    return context.split_view(self.training_split)

  def validate(self, context):
    if self.training_split == context.current.split:
      raise ConfigError(f'AttributionSkewCheck: training_split {self.training_split!r} is the '
                        'split being validated; skew compares two different splits.')
    if self.training_split not in context.available_splits():
      raise ConfigError(
          f'AttributionSkewCheck: the attributions at {context.current.uri} have no '
          f'{self.training_split!r} split (splits: {context.available_splits()}); explain it '
          f"too: AttributionConfig(splits=['{context.current.split}', "
          f"'{self.training_split}']).")
    super().validate(context)

  def _reference_missing(self):
    return f'no {self.training_split!r} split'
