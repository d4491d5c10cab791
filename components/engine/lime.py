"""LIME for tabular data (Ribeiro et al. 2016), without discretisation.

As in the lime package's tabular explainer (sample_around_instance=False),
perturbations are drawn from the reference split's distribution: float
features ~ N(mean, std), other features from the background sample. The
perturbed rows depend only on `seed`, so the model is evaluated on them once
per batch and shared by all its examples; each example then fits its own
ridge regression, as lime does: sklearn's Ridge(alpha=ridge_alpha) objective
with sample_weight = sqrt(exp(-d^2 / kernel_width^2)), d the distance to the
example in the regressors' units (lime's default kernel and width).

Regressors: float features in standardised units, other features as
"equals the example's value" indicators. Reported values:
  coefficients (extras['coefficients']): the local linear model's slope per
    feature in feature units. With ridge_alpha=0 a linear model's weights are
    recovered exactly (given more samples than features): least squares fits
    its outputs with zero residual, whatever the sample weights. lime's
    default ridge_alpha=1 penalises the standardised slopes, so it shrinks
    them toward 0, the more so the smaller the sample weights' sum;
  attributions: slope x (x - mean) for float features, slope x (1 - p) for
    others, where p is how often the background matches the example's value,
    so attributions sum to surrogate(x) - surrogate(mean point) and the
    completeness error is the surrogate's local fit error |surrogate(x) - f(x)|.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tfx_explain.engine import base
from tfx_explain.engine.model import to_model_column
from tfx_explain.validators import check_int, check_number


class Lime(base.AttributionMethod):
  name = 'lime'
  requires_background = True

  def __init__(self, num_samples: int = 1000, kernel_width: Optional[float] = None,
               ridge_alpha: float = 1.0, seed: int = 0, key: Optional[str] = None):
    owner = 'Lime'
    self.num_samples = check_int(owner, 'num_samples', num_samples, minimum=2)
    # None: the lime package's default width, 0.75 * sqrt(number of features).
    self.kernel_width = kernel_width if kernel_width is None else check_number(
        owner, 'kernel_width', kernel_width, low=0, low_open=True)
    # 1.0: lime's Ridge(alpha=1); 0 fits the weighted least squares without shrinkage.
    self.ridge_alpha = check_number(owner, 'ridge_alpha', ridge_alpha, low=0)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    names = model.input_names
    f = len(names)
    rng = np.random.default_rng(self.seed)
    is_float = [model.input_dtypes[n].is_floating for n in names]
    means = np.array([reference.mean.get(n, 0.0) if fl else 0.0 for n, fl in zip(names, is_float)])
    stds = np.array([reference.std.get(n, 1.0) if fl else 1.0 for n, fl in zip(names, is_float)])
    stds = np.where(stds > 0, stds, 1.0)
    s = self.num_samples
    normal = rng.standard_normal((s, f))
    perturbed = {}
    for j, name in enumerate(names):
      if is_float[j]:
        perturbed[name] = (means[j] + normal[:, j] * stds[j]).astype(np.float32)
      else:
        pool = to_model_column(reference.background[name], model.input_dtypes[name])
        perturbed[name] = pool[rng.integers(0, len(pool), s)]
    outputs = self.outputs_at(model, features)
    targets = base.resolve_targets(model, outputs, target)
    n = len(targets)
    prediction = outputs[np.arange(n), targets].astype(np.float64)
    perturbed_outputs = model.predict(perturbed).astype(np.float64)   # [S, K], shared
    width = self.kernel_width or 0.75 * np.sqrt(f)

    x_cols = {n_: to_model_column(features[n_], model.input_dtypes[n_]) for n_ in names}
    coefficients = np.zeros((n, f))
    attributions = np.zeros((n, f))
    baseline_prediction = np.zeros(n)
    for i in range(n):
      # Regressors of the perturbations relative to this example.
      design = np.zeros((s, f))
      instance = np.zeros(f)
      centre = np.zeros(f)
      for j, name in enumerate(names):
        if is_float[j]:
          design[:, j] = (perturbed[name] - means[j]) / stds[j]
          instance[j] = (float(x_cols[name][i]) - means[j]) / stds[j]
        else:
          design[:, j] = (perturbed[name] == x_cols[name][i]).astype(np.float64)
          instance[j] = 1.0
          centre[j] = design[:, j].mean()
      distance = np.sqrt(((design - instance) ** 2).sum(axis=1))
      y = perturbed_outputs[:, targets[i]]
      slope, intercept = _weighted_ridge(design, y, lime_kernel(distance, width),
                                         self.ridge_alpha)
      coefficients[i] = np.where(is_float, slope / stds, slope)
      attributions[i] = slope * (instance - centre)
      baseline_prediction[i] = intercept + slope @ centre
    # The base's completeness error, |sum(attr) - (f(x) - baseline_prediction)|, is then
    # the surrogate's local fit error |surrogate(x) - f(x)|.
    return base.AttributionResult(
        method=self.label, feature_names=list(names), attributions=attributions,
        target=targets, prediction=prediction, baseline_prediction=baseline_prediction,
        output_kind=model.output_kind,
        extras={'coefficients': coefficients, 'kernel_width': float(width)})


def lime_kernel(distance: np.ndarray, width: float) -> np.ndarray:
  """The lime tabular explainer's default kernel: its values are the sample weights."""
  return np.sqrt(np.exp(-(distance ** 2) / width ** 2))


def _weighted_ridge(design, y, sample_weight, alpha):
  """sklearn's Ridge(alpha).fit(design, y, sample_weight): intercept not penalised.

  Minimises sum_i s_i (y_i - c - design_i . b)^2 + alpha |b|^2: centre on the
  weighted means, then scale rows by sqrt(s_i) so the Gram matrix carries s_i.
  """
  w_sum = sample_weight.sum()
  x_mean = (design * sample_weight[:, None]).sum(axis=0) / w_sum
  y_mean = (y * sample_weight).sum() / w_sum
  root = np.sqrt(sample_weight)
  xc = (design - x_mean) * root[:, None]
  yc = (y - y_mean) * root
  gram = xc.T @ xc + alpha * np.eye(design.shape[1])
  slope = np.linalg.lstsq(gram, xc.T @ yc, rcond=None)[0]
  return slope, y_mean - x_mean @ slope
