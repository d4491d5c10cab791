"""Rank statistics the checks compare importances with."""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
  """Spearman rank correlation with average ranks for ties; 0 when either is constant."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2:
    return 1.0 if len(a) == 1 else 0.0
  ra, rb = _average_ranks(a), _average_ranks(b)
  if np.std(ra) == 0 or np.std(rb) == 0:
    return 0.0
  return float(np.corrcoef(ra, rb)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
  order = np.argsort(values, kind='stable')
  ranks = np.empty(len(values))
  ranks[order] = np.arange(len(values), dtype=np.float64)
  for v in np.unique(values):
    tied = values == v
    if tied.sum() > 1:
      ranks[tied] = ranks[tied].mean()
  return ranks


def top_k(importance: Dict[str, float], k: int) -> List[str]:
  return [f for f, _ in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


# Vectorised over bootstrap replicates: importances are [R, F] (one row per replicate).

def ndcg_at_k(current: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
  """nDCG@k of the current global ranking, with the reference importances as relevance.

  SageMaker Clarify's attribution-drift statistic: DCG = sum over the current top
  k of reference_importance / log2(rank + 1), over the same sum in the
  reference's own order. [R, F] each -> [R]; 1 when the orders agree on the top k.
  """
  current, reference = np.atleast_2d(current), np.atleast_2d(reference)
  k = min(k, current.shape[1])
  discount = 1.0 / np.log2(np.arange(2, k + 2))
  order = np.argsort(-current, axis=1, kind='stable')[:, :k]
  dcg = (np.take_along_axis(reference, order, axis=1) * discount).sum(axis=1)
  ideal = (-np.sort(-reference, axis=1)[:, :k] * discount).sum(axis=1)
  return np.where(ideal > 0, dcg / np.maximum(ideal, 1e-300), 1.0)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Spearman correlation of each row pair (average ranks for ties); 0 for a constant row."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  ra = stats.rankdata(np.atleast_2d(a), axis=1)
  rb = stats.rankdata(np.atleast_2d(b), axis=1)
  ra -= ra.mean(axis=1, keepdims=True)
  rb -= rb.mean(axis=1, keepdims=True)
  norm = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
  return np.where(norm > 0, (ra * rb).sum(axis=1) / np.maximum(norm, 1e-300), 0.0)


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
  """Share of the k most important features the two rankings have in common, per row."""
  a, b = np.atleast_2d(a), np.atleast_2d(b)
  k = min(k, a.shape[1])
  if k == 0:
    return np.ones(len(a))
  top_a = np.argsort(-a, axis=1, kind='stable')[:, :k]
  top_b = np.argsort(-b, axis=1, kind='stable')[:, :k]
  shared = (top_a[:, :, None] == top_b[:, None, :]).any(axis=2).sum(axis=1)
  return shared / k


def histogram_distance(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Wasserstein-1 distance between binned distributions, in the attributions' units.

  a, b: [..., F, B] weighted counts on shared `edges` [F, B + 1]; the integral of
  |CDF_a - CDF_b| over the bins. Exact for values at the bin edges, off by at
  most one bin width otherwise.
  """
  cdf_a = np.cumsum(a, axis=-1) / np.maximum(a.sum(axis=-1, keepdims=True), 1e-300)
  cdf_b = np.cumsum(b, axis=-1) / np.maximum(b.sum(axis=-1, keepdims=True), 1e-300)
  return (np.abs(cdf_a - cdf_b) * np.diff(edges, axis=-1)).sum(axis=-1)
