"""Tree SHAP: exact Shapley values of a decision forest's output (`trees.py` does the sums)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from tfx_explain.engine import base
from tfx_explain.engine import trees
from tfx_explain.engine.forest_model import SERVED_TOLERANCE, ForestModelFunction
from tfx_explain.engine.model import ModelAccessError
from tfx_explain.validators import check_choice, check_int

MARGIN_TOLERANCE = 1e-3   # float32 probabilities above 1e-3 give log p to ~1e-4

PATH_DEPENDENT = 'path_dependent'
INTERVENTIONAL = 'interventional'
ALGORITHMS = (INTERVENTIONAL, PATH_DEPENDENT)


class TreeShap(base.AttributionMethod):
  """Exact Tree SHAP for decision forests (TensorFlow Decision Forests models).

  algorithm='interventional' (default): Shapley values of E_r[f(x_S, r_rest)]
  over `background_size` background rows, the same game Kernel SHAP estimates,
  computed exactly; they sum to f(x) minus the background's mean output.
  'path_dependent': the conditional expectations the trees' training covers
  record (no background); they sum to f(x) minus the covers' mean output.

  f is the forest's raw output: the class probabilities of a random forest,
  the margin (logit) of a gradient boosted classifier, whose served
  probabilities are its softmax or sigmoid. Each batch is first checked: the
  trees read from the model must reproduce its served output.
  """
  name = 'tree_shap'
  requires_background = True
  requires_forest = True

  def __init__(self, algorithm: str = INTERVENTIONAL, background_size: int = 100,
               key: Optional[str] = None):
    self.algorithm = check_choice('TreeShap', 'algorithm', algorithm, ALGORITHMS)
    self.background_size = check_int('TreeShap', 'background_size', background_size)
    self.key = key

  def refusal(self, model) -> Optional[str]:
    if not isinstance(model, ForestModelFunction):
      return ('read decision-forest trees, and the model is not a TensorFlow Decision Forests '
              f'model (it is a {type(model).__name__}); TreeShap explains decision forests '
              'only. Use IntegratedGradients or KernelShap.')
    return None

  def _attribute(self, model, features, reference, target, labels, example_ids):
    forest = model.forest
    served = self.outputs_at(model, features)
    targets = base.resolve_targets(model, served, target)
    inputs = model.forest_inputs(features)
    x = forest.encode(inputs)
    raw = forest.raw_from_encoded(x)
    self._check_served(model, served, raw)
    if self.algorithm == PATH_DEPENDENT:
      phi_forest, expected = trees.path_dependent_shap(forest, x, targets)
      background_rows = 0
    else:
      encoded = self._encoded_background(model, reference)
      phi_forest, expected = trees.interventional_shap(forest, x, encoded, targets)
      background_rows = len(encoded)
    mapping = model.feature_of_forest_input(reference.background)
    names = list(model.input_names)
    column = {name: i for i, name in enumerate(names)}
    phi = np.zeros((len(x), len(names)))
    for j, forest_input in enumerate(forest.feature_names):
      phi[:, column[mapping[forest_input]]] += phi_forest[:, j]
    prediction = raw[np.arange(len(x)), targets]
    return base.AttributionResult(
        method=self.label, feature_names=names, attributions=phi, target=targets,
        prediction=prediction, baseline_prediction=np.asarray(expected, np.float64),
        output_kind=model.raw_output_kind,
        extras={'algorithm': self.algorithm, 'forest': forest.description,
                'leaves': int(forest.paths.num_leaves),
                'background_size': int(background_rows)})

  def _encoded_background(self, model: ForestModelFunction, reference) -> np.ndarray:
    """The background as the forest reads it, checked against the served model: once per
    (model, reference), not per batch (a Beam worker explains every batch on one)."""
    cached = self.__dict__.get('_background')
    if cached is not None and cached[0] is model and cached[1] is reference:
      return cached[2]
    background = {k: v[:self.background_size] for k, v in reference.background.items()}
    if not background:
      raise base.ConfigError('TreeShap: the reference has no background rows.')
    encoded = model.forest.encode(model.forest_inputs(background))
    self._check_served(model, model.predict(background), model.forest.raw_from_encoded(encoded),
                       'background rows')
    self.__dict__['_background'] = (model, reference, encoded)
    return encoded

  @staticmethod
  def _check_served(model: ForestModelFunction, served: np.ndarray, raw: np.ndarray,
                    rows: str = 'examples') -> None:
    """The trees must give the served output; margins too, where float32 probabilities
    resolve them (a wrong leaf deep in a saturated softmax barely moves p)."""
    computed = trees.apply_link(raw, model.forest.link)
    gap = np.inf if computed.shape != served.shape else \
        float(np.max(np.abs(computed - served), initial=0.0))
    margin_gap = _margin_gap(model.forest.link, raw, served) if np.isfinite(gap) else 0.0
    if gap > SERVED_TOLERANCE or margin_gap > MARGIN_TOLERANCE:
      raise ModelAccessError(
          f'The trees read from {model.path} do not reproduce its served output on the '
          f'{rows} (largest difference {gap:.3g} in output, {margin_gap:.3g} in margin; shapes '
          f'{computed.shape} vs {served.shape}), so their Tree SHAP values would explain '
          'another function. Explain this model with KernelShap.')


def _margin_gap(link: str, raw: np.ndarray, served: np.ndarray) -> float:
  """Largest difference of the margins, over rows whose probabilities are in [1e-3, 1 - 1e-3]."""
  if link == trees.LINK_IDENTITY:
    return 0.0
  served = served.astype(np.float64)
  resolved = np.all((served > 1e-3) & (served < 1 - 1e-3), axis=1)
  if not resolved.any():
    return 0.0
  p, z = served[resolved], raw[resolved]
  if link == trees.LINK_SOFTMAX:
    served_margin = np.log(p) - np.log(p).mean(axis=1, keepdims=True)
    margin = z - z.mean(axis=1, keepdims=True)
  else:
    served_margin, margin = np.log(p / (1 - p)), z
  return float(np.max(np.abs(served_margin - margin)))
