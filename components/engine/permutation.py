"""Permutation importance (Breiman 2001; Fisher et al. 2019), streamed.

A global method: how much a metric drops when a feature's link to the rest of
the example is broken. Shuffling a whole split would need it all in memory, so
each example's value is replaced with a draw from the reference split's
background sample (the feature's marginal), which is what a global shuffle
does in expectation. Per example we record the metric drop averaged over
`num_repeats` draws; a slice's mean of that column is the slice's drop in
accuracy (or rise in loss). Draws depend on the example id and seed only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tfx_explain.engine import base
from tfx_explain.engine.model import OUTPUT_REGRESSION, to_model_column
from tfx_explain.validators import check_choice, check_int

METRICS = ('accuracy', 'log_loss', 'squared_error')
_TABLE_SIZE = 4096


class PermutationImportance(base.AttributionMethod):
  name = 'permutation_importance'
  requires_labels = True
  requires_background = True
  value_kind = 'metric_drop'

  def __init__(self, metric: Optional[str] = None, num_repeats: int = 5, seed: int = 0,
               key: Optional[str] = None):
    owner = 'PermutationImportance'
    if metric is not None:
      check_choice(owner, 'metric', metric, METRICS)
    self.metric = metric
    self.num_repeats = check_int(owner, 'num_repeats', num_repeats)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  def _score(self, model, outputs, labels, metric):
    """Per-example score where higher is better."""
    if metric == 'squared_error':
      return -(outputs[:, 0] - labels.astype(np.float64)) ** 2
    if model.num_outputs == 1:   # binary classifier with one probability/logit
      p1 = outputs[:, 0] if model.output_kind == 'probability' else 1 / (1 + np.exp(-outputs[:, 0]))
      probs = np.stack([1 - p1, p1], axis=1)
    elif model.output_kind == 'probability':
      probs = outputs
    else:
      shifted = outputs - outputs.max(axis=1, keepdims=True)
      probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    labels = labels.astype(np.int64)
    if metric == 'accuracy':
      return (np.argmax(probs, axis=1) == labels).astype(np.float64)
    chosen = probs[np.arange(len(labels)), labels]
    return np.log(np.clip(chosen, 1e-12, 1.0))

  def _attribute(self, model, features, reference, target, labels, example_ids):
    names = model.input_names
    metric = self.metric or ('squared_error' if model.output_kind == OUTPUT_REGRESSION
                             else 'accuracy')
    labels = np.asarray(labels).reshape(-1)
    if metric != 'squared_error':
      if not np.issubdtype(labels.dtype, np.integer) and not np.all(np.mod(labels, 1) == 0):
        raise base.ConfigError(f'PermutationImportance: metric {metric!r} needs integer class '
                               'labels; the labels are not integers.')
      bad = (labels < 0) | (labels >= max(2, model.num_outputs))
      if np.any(bad):
        raise base.ConfigError(f'PermutationImportance: label {labels[bad][0]!r} is outside the '
                               f'model output classes 0..{max(2, model.num_outputs) - 1}.')
    outputs = self.outputs_at(model, features).astype(np.float64)
    n, f = len(labels), len(names)
    base_score = self._score(model, outputs, labels, metric)
    drops = np.zeros((n, f))
    columns = {name: to_model_column(features[name], model.input_dtypes[name]) for name in names}
    pools = {name: to_model_column(reference.background[name], model.input_dtypes[name])
             for name in names}
    for r in range(self.num_repeats):
      table = np.random.default_rng([self.seed, r]).integers(
          0, reference.background_size, _TABLE_SIZE)
      for j, name in enumerate(names):
        pool = pools[name]
        draw = table[(example_ids * f + j) % _TABLE_SIZE]
        shuffled = dict(columns)
        shuffled[name] = pool[draw]
        score = self._score(model, model.predict(shuffled).astype(np.float64), labels, metric)
        drops[:, j] += base_score - score
    drops /= self.num_repeats
    targets = labels.astype(np.int64) if metric != 'squared_error' else np.zeros(n, np.int64)
    return base.AttributionResult(
        method=self.label, feature_names=list(names), attributions=drops, target=targets,
        prediction=base_score, baseline_prediction=np.full(n, np.nan),
        output_kind=model.output_kind, extras={'metric': metric})
