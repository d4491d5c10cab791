"""Explanation checks: each reads attributions (and optionally a baseline or the model)
and returns pass/fail results with the value and threshold it compared.

No TFX imports: checks run on artifact URIs, so they work in a notebook too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Dict, List, Optional, Sequence


from tfx_explain.configurable import ConfigError, Configurable
from tfx_explain.validation.context import AttributionsView, CheckContext
from tfx_explain.validation.ranking import spearman, top_k
from tfx_explain.validators import check_int, check_number


@dataclasses.dataclass
class CheckResult:
  """One decision of a check.

  A check with a confidence interval decides on the bound named by `decided_on`
  ('lower' or 'upper'; 'estimate' decides on `value`): `lower`/`upper` are the
  interval at `confidence`, `examples` the slice size it came from.
  `stability` says whether the verdict holds within the estimator's standard
  errors ('stable', or how often it flips across estimator draws); None when the
  method is deterministic. `details` carries per-stage or per-step values
  (randomisation stages, faithfulness curves).
  """
  check: str
  passed: bool
  value: Optional[float]
  threshold: Optional[float]
  comparison: str                 # '<=' or '>=' or 'in' / 'not in'
  slice: str = 'Overall'
  method: Optional[str] = None
  feature: Optional[str] = None
  message: str = ''
  lower: Optional[float] = None
  upper: Optional[float] = None
  confidence: Optional[float] = None
  decided_on: str = 'estimate'
  examples: Optional[int] = None
  stability: Optional[str] = None
  details: Dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def decisive_value(self) -> Optional[float]:
    """The number compared with the threshold."""
    return {'lower': self.lower, 'upper': self.upper}.get(self.decided_on, self.value)

  def to_dict(self) -> Dict[str, Any]:
    data = dataclasses.asdict(self)
    for key in ('value', 'lower', 'upper'):
      if data[key] is not None and not math.isfinite(data[key]):
        data[key] = None
    return data


class Check(Configurable):
  """Base class of explanation checks.

  reads_importances: the check decides on `view.importance(...)` alone, so the
  validator can re-run it on estimator draws (tfx_explain.validation.verdicts).
  """
  kind_key = 'check'
  _registry: ClassVar[Dict[str, type]] = {}
  reads_importances: ClassVar[bool] = False

  def validate(self, context: CheckContext) -> None:
    """Raises ConfigError when the attributions cannot support this check."""

  def run(self, context: CheckContext) -> List[CheckResult]:
    raise NotImplementedError

  # helpers shared by checks
  def _require_method(self, view: AttributionsView, method: str, role: str = 'method'):
    if method not in view.methods:
      raise ConfigError(f'{type(self).__name__}: {role} {method!r} is not in the attributions '
                        f'(methods: {view.methods}).')

  def _require_features(self, view: AttributionsView, features: Sequence[str]):
    unknown = [f for f in features if f not in view.features]
    if unknown:
      raise ConfigError(f'{type(self).__name__}: feature(s) {unknown} are not in the '
                        f'attributions (features: {view.features}).')

  @staticmethod
  def _slices(view: AttributionsView, per_slice: bool) -> List[str]:
    return view.slices if per_slice else ['Overall']


class CompletenessCheck(Check):
  """p95 of relative completeness error |sum(attr) - (f(x) - f(b))| / |f(x) - f(b)| <= max."""
  name = 'completeness'

  def __init__(self, method: str = 'integrated_gradients', max_relative_error_p95: float = 0.05,
               per_slice: bool = True):
    self.method = method
    self.max_relative_error_p95 = check_number('CompletenessCheck', 'max_relative_error_p95',
                                               max_relative_error_p95, 0.0, 1e9, low_open=True)
    self.per_slice = bool(per_slice)

  def validate(self, context):
    self._require_method(context.current, self.method)
    if context.current.summary.methods[self.method].relative_completeness_error is None:
      raise ConfigError(f'CompletenessCheck: method {self.method!r} reports no completeness '
                        'error (use a method whose attributions sum to an output difference, '
                        'e.g. integrated_gradients).')

  def run(self, context):
    results = []
    for slice_name in self._slices(context.current, self.per_slice):
      stats = context.current.summary.method_on(self.method, slice_name)
      if stats.relative_completeness_error is None:
        continue
      value = stats.relative_completeness_error.p95
      results.append(CheckResult(
          self.name, value <= self.max_relative_error_p95, value, self.max_relative_error_p95,
          '<=', slice_name, self.method,
          message=f'p95 relative completeness error of {self.method}'))
    return results


class FeatureShareLimit(Check):
  """A feature's share of total mean |attribution| stays at or below a limit."""
  name = 'feature_share_limit'
  reads_importances = True

  def __init__(self, feature: str, max_share: float, methods: Optional[List[str]] = None,
               per_slice: bool = True):
    if not isinstance(feature, str) or not feature:
      raise ConfigError(f'FeatureShareLimit: feature must be a feature name, got {feature!r}.')
    self.feature = feature
    self.max_share = check_number('FeatureShareLimit', 'max_share', max_share, 0.0, 1.0)
    self.methods = list(methods) if methods is not None else None
    self.per_slice = bool(per_slice)

  def _methods(self, view):
    return self.methods if self.methods is not None else view.methods

  def validate(self, context):
    view = context.current
    self._require_features(view, [self.feature])
    for method in self._methods(view):
      self._require_method(view, method)
    if not any(self.feature in view.importance(m) for m in self._methods(view)):
      raise ConfigError(f'FeatureShareLimit: no selected method attributes {self.feature!r} '
                        '(gradient methods skip string inputs); add a model-agnostic method '
                        'such as KernelShap.')

  def run(self, context):
    results = []
    view = context.current
    for slice_name in self._slices(view, self.per_slice):
      for method in self._methods(view):
        importance = view.importance(method, slice_name)
        if self.feature not in importance:
          continue
        total = sum(importance.values())
        share = importance[self.feature] / total if total > 0 else 0.0
        results.append(CheckResult(
            self.name, share <= self.max_share, share, self.max_share, '<=', slice_name, method,
            self.feature, f'share of mean |attribution| on {self.feature!r}'))
    return results


class TopKFeatures(Check):
  """Features that must (or must not) be among the k most important."""
  name = 'top_k_features'
  reads_importances = True

  def __init__(self, k: int, required: Sequence[str] = (), forbidden: Sequence[str] = (),
               method: Optional[str] = None, per_slice: bool = False):
    self.k = check_int('TopKFeatures', 'k', k)
    self.required = list(required)
    self.forbidden = list(forbidden)
    if not self.required and not self.forbidden:
      raise ConfigError('TopKFeatures: give required and/or forbidden features.')
    self.method = method
    self.per_slice = bool(per_slice)

  def validate(self, context):
    view = context.current
    self._require_features(view, self.required + self.forbidden)
    if self.method is not None:
      self._require_method(view, self.method)

  def run(self, context):
    view = context.current
    results = []
    for method in [self.method] if self.method else view.methods:
      for slice_name in self._slices(view, self.per_slice):
        top = top_k(view.importance(method, slice_name), self.k)
        for feature in self.required:
          results.append(CheckResult(
              self.name, feature in top, None, float(self.k), 'in', slice_name, method, feature,
              f'{feature!r} must be in the top {self.k} (top: {top})'))
        for feature in self.forbidden:
          results.append(CheckResult(
              self.name, feature not in top, None, float(self.k), 'not in', slice_name, method,
              feature, f'{feature!r} must not be in the top {self.k} (top: {top})'))
    return results


class StabilityCheck(Check):
  """Global importance ranks agree with the baseline model's (Spearman, top-k overlap)."""
  name = 'stability'
  reads_importances = True

  def __init__(self, method: str = 'integrated_gradients', min_spearman: float = 0.8,
               top_k: int = 3, min_top_k_overlap: float = 0.5, per_slice: bool = True,
               min_slice_examples: int = 30):
    self.method = method
    self.min_spearman = check_number('StabilityCheck', 'min_spearman', min_spearman, -1.0, 1.0)
    self.top_k = check_int('StabilityCheck', 'top_k', top_k)
    self.min_top_k_overlap = check_number('StabilityCheck', 'min_top_k_overlap',
                                          min_top_k_overlap, 0.0, 1.0)
    self.per_slice = bool(per_slice)
    # Rank correlations over a handful of examples are noise, not instability.
    self.min_slice_examples = check_int('StabilityCheck', 'min_slice_examples',
                                        min_slice_examples, minimum=0)

  def validate(self, context):
    self._require_method(context.current, self.method)
    if context.baseline is not None:
      base = context.baseline
      if sorted(base.features) != sorted(context.current.features):
        raise ConfigError(
            f'StabilityCheck: the baseline attributions cover features {sorted(base.features)} '
            f'but the current ones cover {sorted(context.current.features)}; stability is only '
            'defined on the same feature set.')
      self._require_method(base, self.method, 'method (in the baseline)')

  def run(self, context):
    if context.baseline is None:
      return [CheckResult(self.name, True, None, self.min_spearman, '>=', method=self.method,
                          message='no baseline attributions (first run, or no blessed model '
                                  'yet): stability passes by definition')]
    results = []
    shared_slices = [s for s in self._slices(context.current, self.per_slice)
                     if s in context.baseline.slices]
    for slice_name in shared_slices:
      examples = min(context.current.summary.slice(slice_name).examples,
                     context.baseline.summary.slice(slice_name).examples)
      if slice_name != 'Overall' and examples < self.min_slice_examples:
        results.append(CheckResult(
            self.name, True, None, self.min_spearman, '>=', slice_name, self.method,
            message=f'not judged: {examples} examples < min_slice_examples '
                    f'{self.min_slice_examples}'))
        continue
      now = context.current.importance(self.method, slice_name)
      before = context.baseline.importance(self.method, slice_name)
      features = sorted(set(now) & set(before))
      rho = spearman([now[f] for f in features], [before[f] for f in features])
      results.append(CheckResult(self.name, rho >= self.min_spearman, rho, self.min_spearman,
                                 '>=', slice_name, self.method,
                                 message='Spearman correlation of mean |attribution| vs baseline'))
      k = min(self.top_k, len(features))
      overlap = len(set(top_k(now, k)) & set(top_k(before, k))) / k if k else 1.0
      results.append(CheckResult(f'{self.name}_top_k_overlap', overlap >= self.min_top_k_overlap,
                                 overlap, self.min_top_k_overlap, '>=', slice_name, self.method,
                                 message=f'overlap of the top {k} features vs baseline'))
    return results


class MethodAgreementCheck(Check):
  """Two methods rank features alike (Spearman of mean |attribution|)."""
  name = 'method_agreement'
  reads_importances = True

  def __init__(self, method_a: str = 'integrated_gradients', method_b: str = 'kernel_shap',
               min_spearman: float = 0.5, per_slice: bool = False):
    self.method_a = method_a
    self.method_b = method_b
    self.min_spearman = check_number('MethodAgreementCheck', 'min_spearman', min_spearman,
                                     -1.0, 1.0)
    self.per_slice = bool(per_slice)

  def validate(self, context):
    self._require_method(context.current, self.method_a, 'method_a')
    self._require_method(context.current, self.method_b, 'method_b')
    shared = set(context.current.importance(self.method_a)) & set(
        context.current.importance(self.method_b))
    if len(shared) < 2:
      raise ConfigError(f'MethodAgreementCheck: {self.method_a!r} and {self.method_b!r} share '
                        f'{len(shared)} attributed feature(s); at least 2 are needed.')

  def run(self, context):
    results = []
    for slice_name in self._slices(context.current, self.per_slice):
      a = context.current.importance(self.method_a, slice_name)
      b = context.current.importance(self.method_b, slice_name)
      features = sorted(set(a) & set(b))
      rho = spearman([a[f] for f in features], [b[f] for f in features])
      results.append(CheckResult(self.name, rho >= self.min_spearman, rho, self.min_spearman,
                                 '>=', slice_name, f'{self.method_a} vs {self.method_b}',
                                 message=f'Spearman correlation over {features}'))
    return results


class SkippedRowsLimit(Check):
  """At most this fraction of rows may have been skipped for NaN/inf inputs."""
  name = 'skipped_rows'

  def __init__(self, max_fraction: float = 0.0):
    self.max_fraction = check_number('SkippedRowsLimit', 'max_fraction', max_fraction, 0.0, 1.0)

  def run(self, context):
    summary = context.current.summary
    skipped = summary.skipped_non_finite_rows
    fraction = skipped / max(1, skipped + summary.examples)
    return [CheckResult(self.name, fraction <= self.max_fraction, fraction, self.max_fraction,
                        '<=', message=f'{skipped} rows skipped for NaN/inf inputs')]

