"""Notebook entry point: explain a model on in-memory examples."""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from tfx_explain.engine import base
from tfx_explain.engine.loading import load_model_function
from tfx_explain.engine.adapters import KerasModelFunction
from tfx_explain.engine.model import ModelFunction
from tfx_explain.engine.reference import ReferenceStats


def as_model_function(model) -> ModelFunction:
  """A ModelFunction from a ModelFunction, a Keras model or a SavedModel path."""
  if isinstance(model, ModelFunction):
    return model
  if isinstance(model, str):
    return load_model_function(model)
  if hasattr(model, 'inputs') and hasattr(model, 'outputs'):
    return KerasModelFunction(model)
  raise TypeError(f'Cannot explain a {type(model).__name__}: pass a Keras model, a SavedModel '
                  'path or a tfx_explain.engine.model.ModelFunction.')


def explain(model, features: Mapping[str, np.ndarray],
            methods: Sequence[base.AttributionMethod],
            reference: Optional[Union[ReferenceStats, Mapping[str, np.ndarray]]] = None,
            target: base.Target = base.TARGET_PREDICTED,
            labels: Optional[np.ndarray] = None,
            example_ids: Optional[np.ndarray] = None) -> Dict[str, base.AttributionResult]:
  """Runs several methods on the same examples.

  Args:
    model: Keras model, SavedModel path or ModelFunction.
    features: feature name -> [N] values.
    methods: method instances, e.g. [IntegratedGradients(), KernelShap()].
    reference: ReferenceStats, or a features dict (e.g. training rows) to
      compute them from; defaults to `features` itself.
    target: 'predicted' or a class index.
    labels: [N] labels for methods that need them.
    example_ids: [N] int ids that key per-example randomness (permutation
      draws, noise baselines). Default: a hash of each row's feature values
      (`base.content_example_ids`), so a row's result does not depend on
      which call it is in or where; identical rows share an id.
  Returns:
    method label -> AttributionResult.
  """
  function = as_model_function(model)
  if reference is not None and not isinstance(reference, ReferenceStats):
    reference = ReferenceStats.from_features(
        {k: np.asarray(reference[k]) for k in function.input_names}, function.input_dtypes,
        background_size=max([getattr(m, 'background_size', 100) for m in methods] + [100]))
  labels_seen = [m.label for m in methods]
  duplicates = sorted({l for l in labels_seen if labels_seen.count(l) > 1})
  if duplicates:
    raise base.ConfigError(f'Methods share the label(s) {duplicates}; give each a distinct key=.')
  if example_ids is None:
    example_ids = base.content_example_ids(function, features)
  return {m.label: m.attribute(function, features, reference, target, labels, example_ids)
          for m in methods}
