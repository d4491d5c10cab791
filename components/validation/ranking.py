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
