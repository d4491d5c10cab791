"""Per-slice sums of attributions: what workers add up, and the one place means are taken.

A batch of one method's attributions gives one SliceStatistics per slice its
rows fall in; Beam merges them per (slice, method). The summary and the TFMA
records both read their means from here.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class SliceStatistics:
  """Sums over the examples of one slice for one method; features are columns."""
  examples: int
  count: np.ndarray            # [F] examples where the feature was attributed (not NaN)
  total: np.ndarray            # [F] sum of attributions
  total_abs: np.ndarray        # [F] sum of |attributions|
  error_sum: float = 0.0       # sum of completeness errors
  relative_error_sum: float = 0.0
  prediction_sum: float = 0.0
  # Vector features: per example, the sum of its elements' attributions.
  group_count: Optional[np.ndarray] = None     # [G]
  group_total: Optional[np.ndarray] = None
  group_total_abs: Optional[np.ndarray] = None
  map_sum: Optional[np.ndarray] = None         # image models: sum of display maps [H, W]
  # Sampling estimators: sum and count of per-example standard errors [F].
  standard_error_total: Optional[np.ndarray] = None
  standard_error_count: Optional[np.ndarray] = None
  # Methods that choose their model evaluations per example: their sum.
  steps_sum: Optional[int] = None

  @classmethod
  def of_rows(cls, values: np.ndarray, prediction: np.ndarray,
              error: Optional[np.ndarray] = None, relative_error: Optional[np.ndarray] = None,
              groups: Sequence[Sequence[int]] = (),
              display: Optional[np.ndarray] = None,
              standard_errors: Optional[np.ndarray] = None,
              steps: Optional[np.ndarray] = None) -> 'SliceStatistics':
    """Statistics of the rows of one batch: values [n, F] (NaN = not attributed)."""
    finite = ~np.isnan(values)
    stats = cls(
        examples=len(values),
        count=finite.sum(axis=0).astype(np.int64),
        total=np.where(finite, values, 0.0).sum(axis=0),
        total_abs=np.where(finite, np.abs(values), 0.0).sum(axis=0),
        error_sum=float(error.sum()) if error is not None else 0.0,
        relative_error_sum=float(relative_error.sum()) if relative_error is not None else 0.0,
        prediction_sum=float(np.asarray(prediction, np.float64).sum()))
    if groups:
      totals = np.stack([np.where(finite[:, g], values[:, g], 0.0).sum(axis=1)
                         for g in groups], axis=1)
      attributed = np.stack([finite[:, g].any(axis=1) for g in groups], axis=1)
      stats.group_count = attributed.sum(axis=0).astype(np.int64)
      stats.group_total = np.where(attributed, totals, 0.0).sum(axis=0)
      stats.group_total_abs = np.where(attributed, np.abs(totals), 0.0).sum(axis=0)
    if display is not None:
      stats.map_sum = np.asarray(display, np.float64).sum(axis=0)
    if standard_errors is not None:
      known = ~np.isnan(standard_errors)
      stats.standard_error_total = np.where(known, standard_errors, 0.0).sum(axis=0)
      stats.standard_error_count = known.sum(axis=0).astype(np.int64)
    if steps is not None:
      stats.steps_sum = int(np.asarray(steps, np.int64).sum())
    return stats

  def merge(self, other: 'SliceStatistics') -> 'SliceStatistics':
    def add(a, b):
      return None if a is None else a + b
    return SliceStatistics(
        self.examples + other.examples, self.count + other.count, self.total + other.total,
        self.total_abs + other.total_abs, self.error_sum + other.error_sum,
        self.relative_error_sum + other.relative_error_sum,
        self.prediction_sum + other.prediction_sum,
        add(self.group_count, other.group_count), add(self.group_total, other.group_total),
        add(self.group_total_abs, other.group_total_abs), add(self.map_sum, other.map_sum),
        add(self.standard_error_total, other.standard_error_total),
        add(self.standard_error_count, other.standard_error_count),
        add(self.steps_sum, other.steps_sum))

  # -- means: NaN where nothing was attributed ----------------------------------
  @staticmethod
  def _per(total, count):
    total = np.asarray(total, np.float64)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)

  def mean(self) -> np.ndarray:
    return self._per(self.total, self.count)

  def mean_abs(self) -> np.ndarray:
    return self._per(self.total_abs, self.count)

  def totals(self) -> np.ndarray:
    return np.where(self.count > 0, self.total, np.nan)

  def totals_abs(self) -> np.ndarray:
    return np.where(self.count > 0, self.total_abs, np.nan)

  def group_means(self) -> Dict[str, np.ndarray]:
    if self.group_count is None:
      return {}
    return {'mean': self._per(self.group_total, self.group_count),
            'mean_abs': self._per(self.group_total_abs, self.group_count)}

  def mean_standard_error(self) -> Optional[np.ndarray]:
    """[F] mean per-example standard error.

    It bounds the standard error of the slice's mean attribution whatever the
    correlation between examples' estimates (equal when perfectly correlated,
    as with coalitions shared by a batch).
    """
    if self.standard_error_total is None:
      return None
    return self._per(self.standard_error_total, self.standard_error_count)

  def mean_map(self) -> Optional[np.ndarray]:
    return None if self.map_sum is None else self.map_sum / self.examples

  def per_example(self, value_sum: float) -> float:
    return value_sum / self.examples


def merge_all(statistics) -> SliceStatistics:
  merged = None
  for item in statistics:
    merged = item if merged is None else merged.merge(item)
  return merged


def finite_dict(names: Sequence[str], values: np.ndarray) -> Dict[str, float]:
  return {n: float(v) for n, v in zip(names, values) if not np.isnan(v)}


def ranking(names: Sequence[str], mean_abs: np.ndarray) -> List[str]:
  """Attributed features by mean |attribution|, largest first."""
  return [names[i] for i in np.argsort(-np.nan_to_num(mean_abs, nan=-1.0), kind='stable')
          if not np.isnan(mean_abs[i])]
