"""Reference statistics of a split: baselines and the background sample.

Float features get mean / median / std; every feature gets its most frequent
value (the baseline of a categorical feature) and a background sample that
model-agnostic methods draw replacement values from. The Beam transform in
`tfx_explain.beam` computes the same object over a whole split; here it can
also be computed in memory from a batch (notebooks, tests).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from tfx_explain.engine.baselines import BaselineSpec, check_baseline


@dataclasses.dataclass
class ReferenceStats:
  feature_names: List[str]
  is_float: Dict[str, bool]
  mean: Dict[str, float]
  median: Dict[str, float]
  std: Dict[str, float]
  mode: Dict[str, Any]
  # name -> [B] values, in a seed-determined random order: any prefix is a uniform sample.
  background: Dict[str, np.ndarray]
  count: int
  source: str = ''

  @property
  def background_size(self) -> int:
    return len(next(iter(self.background.values()))) if self.background else 0

  # -- construction ----------------------------------------------------------
  @classmethod
  def from_features(cls, features: Mapping[str, np.ndarray],
                    dtypes: Optional[Mapping[str, tf.DType]] = None,
                    background_size: int = 100, seed: int = 0,
                    source: str = 'in-memory batch') -> 'ReferenceStats':
    names = list(features)
    n = len(np.asarray(features[names[0]]).reshape(-1)) if names else 0
    if n == 0:
      raise ValueError('Cannot compute reference statistics from zero examples.')
    is_float = {}
    for name in names:
      if dtypes is not None and name in dtypes:
        is_float[name] = bool(tf.as_dtype(dtypes[name]).is_floating)
      else:
        is_float[name] = np.asarray(features[name]).dtype.kind == 'f'
    mean, median, std, mode = {}, {}, {}, {}
    for name in names:
      column = np.asarray(features[name]).reshape(-1)
      if is_float[name]:
        values = column.astype(np.float64)
        mean[name] = float(np.mean(values))
        median[name] = float(np.median(values))
        std[name] = float(np.std(values))
      mode[name] = most_frequent(column.tolist())
    # Kept in the draw's order, not sorted: methods take the first k rows as a
    # smaller background, and a prefix is a uniform sample only in a random order.
    take = np.random.default_rng(seed).choice(n, size=min(background_size, n), replace=False,
                                              shuffle=True)
    background = {name: np.asarray(features[name]).reshape(-1)[take] for name in names}
    return cls(names, is_float, mean, median, std, mode, background, n, source)

  # -- baselines ---------------------------------------------------------------
  def baseline_values(self, spec: BaselineSpec, names: Optional[List[str]] = None,
                      owner: str = 'baseline') -> Dict[str, Any]:
    """One reference value per feature for a baseline spec.

    Float features: 0, mean or median. Other features (strings, integers
    used as categories): their most frequent value. An explicit dict
    overrides single features.
    """
    names = list(names or self.feature_names)
    spec = check_baseline(owner, spec, feature_names=names)
    overrides: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
    kind = 'mean' if overrides else spec
    values = {}
    for name in names:
      if name in overrides:
        values[name] = overrides[name]
      elif not self.is_float.get(name, True):
        values[name] = self.mode[name]
      elif kind == 'zeros':
        values[name] = 0.0
      elif kind == 'median':
        values[name] = self.median[name]
      else:
        values[name] = self.mean[name]
    return values

  # -- serialisation -----------------------------------------------------------
  def to_json(self) -> str:
    return json.dumps({
        'feature_names': self.feature_names,
        'is_float': self.is_float,
        'mean': self.mean, 'median': self.median, 'std': self.std,
        'mode': {k: _jsonable(v) for k, v in self.mode.items()},
        'background': {k: [_jsonable(v) for v in vals.tolist()]
                       for k, vals in self.background.items()},
        'count': self.count, 'source': self.source,
    }, indent=1, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'ReferenceStats':
    data = json.loads(text)
    is_float = data['is_float']
    mode = {k: (v if is_float[k] else _from_jsonable(v)) for k, v in data['mode'].items()}
    background = {}
    for name, values in data['background'].items():
      if is_float[name]:
        background[name] = np.asarray(values, np.float32)
      else:
        background[name] = np.asarray([_from_jsonable(v) for v in values], dtype=object)
    return cls(data['feature_names'], is_float, data['mean'], data['median'], data['std'],
               mode, background, data['count'], data.get('source', ''))


def most_frequent(values: List[Any]) -> Any:
  """Most frequent value; ties go to the smallest, so the result is deterministic."""
  counts = collections.Counter(values)
  best = max(counts.values())
  return min(v for v, c in counts.items() if c == best)


def _jsonable(value):
  if isinstance(value, bytes):
    try:
      return {'utf8': value.decode('utf-8')}
    except UnicodeDecodeError:
      return {'base64': base64.b64encode(value).decode('ascii')}
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  return value


def _from_jsonable(value):
  if isinstance(value, dict) and 'utf8' in value:
    return value['utf8'].encode('utf-8')
  if isinstance(value, dict) and 'base64' in value:
    return base64.b64decode(value['base64'])
  return value
