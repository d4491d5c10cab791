"""Checks on a text model's words: which words drive it, and whether that changed.

Both read the split's per-word summaries (`tables.load_token_summary`): each
word's mean |score| over its occurrences, per token method and slice. Words
seen fewer than `min_count` times are left out: a word met once ranks on one
example's score, which says little about the model.

    TopKTokens       words that must (or must not) be among the k words with the
                     largest mean |score|: a sentiment model should be moved by
                     'awful', not by an actor's name.
    TokenDriftCheck  the k top words of the last blessed model are still among
                     the current model's k top words (overlap >= min_overlap).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from tfx_explain.configurable import ConfigError
from tfx_explain.validation.checks import Check, CheckResult
from tfx_explain.validation.ranking import top_k
from tfx_explain.validators import check_int, check_number


def _require_token_method(owner: str, view, method: Optional[str], role: str = 'attributions'):
  methods = view.token_methods()
  if not methods:
    raise ConfigError(f'{owner}: the {role} have no per-word summaries; explain the text with '
                      'a token method (TokenShap, TokenIntegratedGradients, '
                      'TokenExpectedGradients).')
  if method is not None and method not in methods:
    raise ConfigError(f'{owner}: method {method!r} has no per-word summary in the {role} '
                      f'(token methods: {methods}).')
  return [method] if method is not None else methods


class TopKTokens(Check):
  """Words that must (or must not) be among the k words of largest mean |score|."""
  name = 'top_k_tokens'

  def __init__(self, k: int, required: Sequence[str] = (), forbidden: Sequence[str] = (),
               method: Optional[str] = None, min_count: int = 3, per_slice: bool = False):
    self.k = check_int('TopKTokens', 'k', k)
    self.required = [str(w) for w in required]
    self.forbidden = [str(w) for w in forbidden]
    if not self.required and not self.forbidden:
      raise ConfigError('TopKTokens: give required and/or forbidden words.')
    self.method = method
    self.min_count = check_int('TopKTokens', 'min_count', min_count)
    self.per_slice = bool(per_slice)

  def validate(self, context):
    _require_token_method('TopKTokens', context.current, self.method)

  def run(self, context) -> List[CheckResult]:
    view = context.current
    results = []
    for method in _require_token_method('TopKTokens', view, self.method):
      for slice_name in self._slices(view, self.per_slice):
        top = top_k(view.token_importance(method, slice_name, self.min_count), self.k)
        for word in self.required:
          results.append(CheckResult(
              self.name, word in top, None, float(self.k), 'in', slice_name, method, word,
              f'word {word!r} must be among the top {self.k} words (top: {top})'))
        for word in self.forbidden:
          results.append(CheckResult(
              self.name, word not in top, None, float(self.k), 'not in', slice_name, method,
              word, f'word {word!r} must not be among the top {self.k} words (top: {top})'))
    return results


class TokenDriftCheck(Check):
  """Share of the baseline model's k top words still among the current model's k top words."""
  name = 'token_drift'

  def __init__(self, k: int = 10, min_overlap: float = 0.6, method: Optional[str] = None,
               min_count: int = 3, per_slice: bool = False):
    self.k = check_int('TokenDriftCheck', 'k', k)
    self.min_overlap = check_number('TokenDriftCheck', 'min_overlap', min_overlap, 0.0, 1.0)
    self.method = method
    self.min_count = check_int('TokenDriftCheck', 'min_count', min_count)
    self.per_slice = bool(per_slice)

  def validate(self, context):
    _require_token_method('TokenDriftCheck', context.current, self.method)
    if context.baseline is not None:
      _require_token_method('TokenDriftCheck', context.baseline, self.method,
                            'baseline attributions')

  def run(self, context) -> List[CheckResult]:
    if context.baseline is None:
      return [CheckResult(self.name, True, None, self.min_overlap, '>=', method=self.method,
                          message='no baseline attributions (first run, or no blessed model '
                                  'yet): token drift passes by definition')]
    results = []
    current, baseline = context.current, context.baseline
    shared = set(baseline.token_methods())
    for method in _require_token_method('TokenDriftCheck', current, self.method):
      if method not in shared:
        continue
      for slice_name in self._slices(current, self.per_slice):
        if slice_name not in baseline.slices:
          continue
        now = top_k(current.token_importance(method, slice_name, self.min_count), self.k)
        before = top_k(baseline.token_importance(method, slice_name, self.min_count), self.k)
        if not before:
          continue
        overlap = len(set(now) & set(before)) / len(before)
        results.append(CheckResult(
            self.name, overlap >= self.min_overlap, overlap, self.min_overlap, '>=', slice_name,
            method, message=f'share of the baseline\'s top {len(before)} words {before} among '
                            f'the current top {self.k} {now}'))
    return results
