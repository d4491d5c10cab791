"""Gradient methods: Integrated and Expected Gradients, SmoothGrad, gradient x input.

All interpolation / noise points of a whole batch go through the model in one
vectorised gradient call (chunked by `ModelFunction.max_rows`); adaptive
Integrated Gradients makes one such call per refinement round. Gradients reach
only float inputs with a differentiable path (`model.float_features`); the
others (`model.discrete_features`: strings, integer ids, bucketised floats)
are held at their observed values. Integrated Gradients attributes them by
exact steps (see its docstring); the local gradient methods report them as
skipped (NaN attribution).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Optional, Union

import numpy as np

from tfx_explain.engine import base
from tfx_explain.engine.adaptive_paths import ADAPTIVE_RULES, refine_paths
from tfx_explain.engine.model import to_model_column
from tfx_explain.engine.baselines import BaselineSpec, check_baseline, float_baseline
from tfx_explain.validators import check_choice, check_int, check_number


def integration_nodes(steps: int, rule: str):
  """Points alpha in [0, 1] and weights w with sum_k w_k g(alpha_k) ~ int_0^1 g."""
  if rule == 'trapezoid':
    alphas = np.linspace(0.0, 1.0, steps)
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[0] = weights[-1] = 0.5 / (steps - 1)
  elif rule == 'gauss_legendre':
    nodes, gl_weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1.0) / 2.0, gl_weights / 2.0
  elif rule == 'riemann_left':
    alphas, weights = np.arange(steps) / steps, np.full(steps, 1.0 / steps)
  elif rule == 'riemann_right':
    alphas, weights = np.arange(1, steps + 1) / steps, np.full(steps, 1.0 / steps)
  elif rule == 'riemann_middle':
    alphas, weights = (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
  else:
    raise base.ConfigError(f'Unknown integration rule {rule!r}.')
  return alphas.astype(np.float64), weights.astype(np.float64)


class _GradientMethod(base.AttributionMethod):
  """Shared plumbing: split features, predict, targets, NaN for skipped inputs."""
  gradient_based = True

  def _prepare(self, model, features, target):
    matrix, others = model.split(features)
    outputs = self.outputs_at(model, features)
    targets = base.resolve_targets(model, outputs, target)
    prediction = outputs[np.arange(len(targets)), targets]
    return matrix, others, targets, prediction

  def _full(self, model, float_values: np.ndarray) -> np.ndarray:
    """[N, F_float] -> [N, F] in model input order; NaN for non-float inputs."""
    n = float_values.shape[0]
    result = np.full((n, len(model.input_names)), np.nan, np.float64)
    for j, name in enumerate(model.float_features):
      result[:, model.input_names.index(name)] = float_values[:, j]
    return result

  def _result(self, model, values, targets, prediction, baseline_prediction, extras=None,
              discrete_values=None):
    """values: [N, F_float]; discrete_values, when the method attributes them, [N, F_other]."""
    attributions = self._full(model, values)
    if discrete_values is not None:
      columns = [model.input_names.index(name) for name in model.other_features]
      attributions[:, columns] = discrete_values
    return base.AttributionResult(
        method=self.label, feature_names=list(model.input_names),
        attributions=attributions, target=targets,
        prediction=np.asarray(prediction, np.float64),
        baseline_prediction=np.asarray(baseline_prediction, np.float64),
        skipped_features=self.skipped_features(model), output_kind=model.output_kind,
        extras=extras or {})


def _requested_targets(model, n: int, target) -> np.ndarray:
  """Classes to explain known before running the model; -1 where the prediction decides."""
  if isinstance(target, str) and target == base.TARGET_PREDICTED and model.num_outputs > 1:
    return np.full(n, -1, np.int32)
  # Validates the target (class range, per-example length) against the output size.
  return base.resolve_targets(model, np.zeros((n, max(1, model.num_outputs)), np.float32), target)


DISCRETE_CHOICES = ('symmetric', 'skip')
AUTO = 'auto'
FIXED_RULES = ('trapezoid', 'gauss_legendre', 'riemann_left', 'riemann_right', 'riemann_middle')


def check_steps(owner: str, steps, rule: str, tolerance, initial_steps, max_steps):
  """(steps, rule, tolerance, initial_steps, max_steps) of an Integrated Gradients method.

  steps is a number of points (>= 2) or 'auto'; 'auto' takes the rules that refine
  (`adaptive_paths.ADAPTIVE_RULES`). The other three are checked either way.
  """
  if steps != AUTO and (isinstance(steps, (bool, str)) or
                        not isinstance(steps, numbers.Integral) or steps < 2):
    raise base.ConfigError(f"{owner}: steps must be an integer >= 2 or 'auto', got {steps!r}.")
  if steps == AUTO and rule not in ADAPTIVE_RULES:
    raise base.ConfigError(f"{owner}: with steps='auto', rule must be one of "
                           f'{list(ADAPTIVE_RULES)}, got {rule!r}.')
  rule = check_choice(owner, 'rule', rule, FIXED_RULES)
  tolerance = check_number(owner, 'tolerance', tolerance, low=0, low_open=True)
  initial_steps = check_int(owner, 'initial_steps', initial_steps, minimum=2)
  max_steps = check_int(owner, 'max_steps', max_steps, minimum=2)
  if max_steps < initial_steps:
    raise base.ConfigError(f'{owner}: max_steps must be >= initial_steps ({initial_steps}), '
                           f'got {max_steps}.')
  return (steps if steps == AUTO else int(steps)), rule, tolerance, initial_steps, max_steps


@dataclasses.dataclass
class _Path:
  """One float path's attributions, the outputs at its ends, and its gradient points."""
  values: np.ndarray             # [N, F_float]
  start: Optional[np.ndarray]    # [N] f(b), or None when the rule does not evaluate it
  end: np.ndarray                # [N] f(x)
  targets: np.ndarray            # [N] explained class
  steps: np.ndarray              # [N] gradient points evaluated


class IntegratedGradients(_GradientMethod):
  """Integrated Gradients (Sundararajan et al. 2017).

  attr_i = (x_i - b_i) * int_0^1 df(b + a(x - b))/dx_i da, integrated with the
  trapezoid rule (exact for a quadratic model), Gauss-Legendre, or Riemann
  sums. Completeness error per example: |sum_i attr_i - (f(x) - f(b))|.

  steps='auto' chooses the points per example (`adaptive_paths`): from
  `initial_steps` evenly spaced points it bisects the intervals of the path
  that carry the most completeness error until the relative completeness
  error |sum(attr) - (f(x) - f(b))| / max(|f(x) - f(b)|, 1e-6) is at most
  `tolerance`, or the example has used `max_steps` gradient points; an example
  that has converged is not evaluated again. Rules: 'trapezoid' (the
  default: fewest gradient points to a relative error of 1e-3 on the
  benchmark models, benchmarks/ig_throughput.py) or 'gauss_legendre'. It is
  the same attribution as with a fixed number of points, so the same class and
  name: only how the points are placed differs. Completeness checks the sum,
  and the intervals' errors may cancel in it: at equal completeness the
  attributions of fixed steps are closer to the exact integral, at equal
  points those of 'auto' (benchmarks). The adaptive pass also
  predicts first, to know each example's class (one forward pass, shared with
  the other methods of a batch). Either way `result.steps` holds the gradient
  points each example used (both float paths with discrete='symmetric').

  Inputs gradients cannot reach (strings, integer ids, floats a Transform
  bucketises: `model.discrete_features`) move from their baseline value to the
  example's in one step: the most frequent value of a string or integer input,
  the baseline setting (mean, median, zero) of a float one, or the value given. With
  discrete='symmetric' the step is taken both before and after the float path
  and the two paths averaged: the float inputs get Integrated Gradients along
  each, the discrete ones share each step by exact Shapley values (sampled
  with antithetic permutations past 10 of them), so attributions still sum to
  f(x) - f(b) with b the whole baseline. With steps='auto' each float path
  refines to the tolerance relative to its own output difference.
  discrete='skip' leaves them NaN and compares with f(b_float, x_discrete),
  for pure gradient attributions.
  """
  name = 'integrated_gradients'

  def __init__(self, steps: Union[int, str] = 64, baseline: BaselineSpec = 'mean',
               rule: str = 'trapezoid', discrete: str = 'symmetric', seed: int = 0,
               tolerance: float = 1e-3, initial_steps: int = 5, max_steps: int = 1024,
               key: Optional[str] = None):
    owner = 'IntegratedGradients'
    self.steps, self.rule, self.tolerance, self.initial_steps, self.max_steps = check_steps(
        owner, steps, rule, tolerance, initial_steps, max_steps)
    self.baseline = check_baseline(owner, baseline)
    self.discrete = check_choice(owner, 'discrete', discrete, DISCRETE_CHOICES)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  @property
  def uses_outputs(self):
    # A fixed path evaluates x itself; the adaptive one needs the class first.
    return self.steps == AUTO

  def skipped_features(self, model):
    return list(model.other_features) if self.discrete == 'skip' else []

  def _path(self, model, matrix, base_vec, others, targets) -> _Path:
    """Float attributions along b_f -> x_f with the other inputs fixed.

    targets may be -1 (the predicted class) for a fixed number of points only.
    """
    if self.steps == AUTO:
      integrals = refine_paths(model, matrix, np.broadcast_to(base_vec, matrix.shape), others,
                               targets, self.rule, self.tolerance, self.initial_steps,
                               self.max_steps)
      values = (matrix - base_vec[None, :]).astype(np.float64) * integrals.mean_gradients
      return _Path(values, integrals.start, integrals.end, targets, integrals.steps)
    alphas, weights = integration_nodes(self.steps, self.rule)
    outputs, avg_grads, at_x, chosen = model.path_gradients(
        matrix, base_vec, alphas, weights, others, targets)
    values = (matrix - base_vec[None, :]).astype(np.float64) * avg_grads.astype(np.float64)
    n = len(matrix)
    chosen = base.resolve_targets(model, at_x, chosen)
    # The path pass appends x as a point (weight 0) when the rule's grid lacks it.
    rows = len(alphas) + int(not (alphas == 1.0).any())
    return _Path(values, outputs[:, 0].astype(np.float64) if alphas[0] == 0.0 else None,
                 at_x[np.arange(n), chosen].astype(np.float64), chosen,
                 np.full(n, rows, np.int64))

  def _attribute(self, model, features, reference, target, labels, example_ids):
    matrix, others = model.split(features)
    base_vec, baseline_row = float_baseline(model, reference, self.baseline,
                                            'IntegratedGradients')
    n = matrix.shape[0]
    if self.steps == AUTO:
      targets = base.resolve_targets(model, self.outputs_at(model, features), target)
    else:
      # The path pass also evaluates x, so it predicts (and picks the predicted
      # class) itself: no separate model call.
      targets = _requested_targets(model, n, target)
    path = self._path(model, matrix, base_vec, others, targets)
    targets, prediction = path.targets, path.end
    extras = {'baseline': dict(zip(model.float_features, base_vec.tolist()))}
    discrete = model.discrete_features
    if discrete and self.discrete == 'symmetric':
      return self._with_discrete(model, features, baseline_row, matrix, base_vec, path, extras)
    if path.start is not None:
      # The path starts at the baseline: its output came with the gradients.
      baseline_prediction = path.start
    else:
      baseline_matrix = np.broadcast_to(base_vec, matrix.shape).copy()
      base_out = model.predict_split(baseline_matrix, others)
      baseline_prediction = base_out[np.arange(n), targets].astype(np.float64)
    result = self._result(model, path.values, targets, prediction, baseline_prediction, extras)
    result.steps = path.steps
    return result

  def _with_discrete(self, model, features, baseline_row, matrix, base_vec, path, extras):
    from tfx_explain.engine import shapley  # pylint: disable=g-import-not-at-top
    discrete = model.discrete_features
    n = matrix.shape[0]
    targets = path.targets
    # The float path again, with the discrete inputs at their baseline.
    at_baseline = [to_model_column(np.repeat(np.asarray([baseline_row[name]], object), n),
                                   model.input_dtypes[name]) for name in discrete]
    path_at_b = self._path(model, matrix, base_vec, at_baseline, targets)
    players = [model.input_names.index(name) for name in discrete]
    # The discrete step with the floats at x, and with the floats at their baseline.
    step_at_x, _, _, exact = shapley.subset_shapley(
        model, features, baseline_row, players, True, targets, self.seed)
    step_at_b, baseline_prediction, _, _ = shapley.subset_shapley(
        model, features, baseline_row, players, False, targets, self.seed)
    float_values = 0.5 * (path.values + path_at_b.values)
    discrete_values = 0.5 * (step_at_x + step_at_b)
    extras = dict(extras, discrete_features=list(discrete),
                  discrete_shapley='exact' if exact else 'sampled')
    # baseline_prediction is f at the whole baseline, discrete inputs included, so the
    # base's completeness error compares float and discrete attributions together with it.
    result = self._result(model, float_values, targets, path.end, baseline_prediction, extras,
                          discrete_values=discrete_values)
    result.steps = path.steps + path_at_b.steps
    return result


class GradientTimesInput(_GradientMethod):
  """grad f(x) * (x - baseline); baseline 'zeros' gives the classic gradient x input."""
  name = 'gradient_times_input'

  def __init__(self, baseline: BaselineSpec = 'zeros', key: Optional[str] = None):
    self.baseline = check_baseline('GradientTimesInput', baseline)
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    matrix, others, targets, prediction = self._prepare(model, features, target)
    base_vec, _ = float_baseline(model, reference, self.baseline, 'GradientTimesInput')
    _, grads = model.target_gradients(matrix, others, targets)
    values = grads.astype(np.float64) * (matrix - base_vec[None, :])
    base_out = model.predict_split(np.broadcast_to(base_vec, matrix.shape).copy(), others)
    return self._result(model, values, targets, prediction,
                        base_out[np.arange(len(targets)), targets])


class VanillaGradients(_GradientMethod):
  """d f(x)[target] / d x: sensitivities in output units per feature unit."""
  name = 'vanilla_gradients'
  value_kind = 'gradient'

  def __init__(self, key: Optional[str] = None):
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    matrix, others, targets, prediction = self._prepare(model, features, target)
    _, grads = model.target_gradients(matrix, others, targets)
    return self._result(model, grads.astype(np.float64), targets, prediction,
                        np.full(len(targets), np.nan))


class SmoothGrad(_GradientMethod):
  """SmoothGrad (Smilkov et al. 2017): gradients averaged over Gaussian noise.

  Noise for feature i has standard deviation noise_level * std_i, where std_i
  comes from the reference split, so features on different scales get
  comparable noise. The noise draws depend only on `seed`, never on how
  examples are batched, so results are reproducible across runners.
  With multiply_by_input the mean gradient is multiplied by (x - baseline).
  """
  name = 'smoothgrad'

  @property
  def value_kind(self):
    return 'attribution' if self.multiply_by_input else 'gradient'

  def __init__(self, num_samples: int = 50, noise_level: float = 0.15,
               multiply_by_input: bool = False, baseline: BaselineSpec = 'zeros',
               seed: int = 0, key: Optional[str] = None):
    owner = 'SmoothGrad'
    self.num_samples = check_int(owner, 'num_samples', num_samples)
    self.noise_level = check_number(owner, 'noise_level', noise_level, low=0)
    self.multiply_by_input = bool(multiply_by_input)
    self.baseline = check_baseline(owner, baseline)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    matrix, others, targets, prediction = self._prepare(model, features, target)
    n, f = matrix.shape
    stds = np.asarray([reference.std.get(name, 0.0) for name in model.float_features], np.float32)
    stds = np.where(stds > 0, stds, 1.0).astype(np.float32)
    noise = np.random.default_rng(self.seed).standard_normal((self.num_samples, f)).astype(np.float32)
    s = self.num_samples
    points = (matrix[:, None, :] + self.noise_level * noise[None, :, :] * stds).reshape(n * s, f)
    _, grads = model.target_gradients(points, [np.repeat(o, s) for o in others],
                                      np.repeat(targets, s))
    values = grads.reshape(n, s, f).astype(np.float64).mean(axis=1)
    baseline_prediction = np.full(n, np.nan)
    if self.multiply_by_input:
      base_vec, _ = float_baseline(model, reference, self.baseline, 'SmoothGrad')
      values = values * (matrix - base_vec[None, :])
      base_out = model.predict_split(np.broadcast_to(base_vec, matrix.shape).copy(), others)
      baseline_prediction = base_out[np.arange(n), targets]
    return self._result(model, values, targets, prediction, baseline_prediction)


def expected_gradients_draws(num_samples: int, background_size: int,
                             rng: np.random.Generator):
  """One example's (background row [S], alpha [S], weight [S]) for Expected Gradients.

  min(S, B) distinct background rows are drawn without replacement, each used
  for S // B or S // B + 1 draws (which get one more is drawn too) and weighted
  so that every row used carries the same total weight: once S >= B every
  background row carries exactly 1/B and the baselines add no sampling error.
  The draws of one row take alphas from as many equal strata of [0, 1], and
  within a layer of draws (the k-th draw of every row) the offsets inside the
  strata are a Latin hypercube across rows. Every alpha is uniform on [0, 1]
  and the weights sum to 1, so the estimate is unbiased.
  """
  s, b = num_samples, background_size
  used = min(s, b)
  rows = rng.permutation(b)[:used]
  draws = np.full(used, s // used)
  draws[:s % used] += 1
  picked, alphas, weights = [], [], []
  for layer in range(int(draws.max())):
    members = np.nonzero(draws > layer)[0]
    m = len(members)
    offsets = (rng.permutation(m) + rng.uniform(size=m)) / m
    picked.append(rows[members])
    alphas.append((layer + offsets) / draws[members])
    weights.append(1.0 / (used * draws[members]))
  return np.concatenate(picked), np.concatenate(alphas), np.concatenate(weights)


def _draw_errors(draws: np.ndarray, values: np.ndarray, weights: np.ndarray,
                 background_size: int) -> np.ndarray:
  """[N, F] standard errors of Expected Gradients' weighted means of draws [N, S, F].

  With fewer draws than background rows, those of independent draws (the
  baselines' finite-population correction and the alpha strata uncredited).
  Once every row is used the baselines add no error: only the spread of each
  row's own draws counts, pooled over the rows drawn more than once for the
  rows drawn once (and the spread across rows if none is). Draws are in
  `expected_gradients_draws`' order: layer by layer, each layer the rows in
  one order, the last layer its first S % B rows.
  """
  n, s, f = draws.shape
  if s < 2:
    return np.full((n, f), np.nan)
  if s <= background_size:
    spread = ((draws - values[:, None, :]) ** 2).sum(axis=1) / (s - 1)
    return np.sqrt((weights ** 2).sum(axis=1)[:, None] * spread)
  b = background_size
  layers, extra = divmod(s, b)
  full = draws[:, :layers * b].reshape(n, layers, b, f)
  sums, squares = full.sum(axis=1), (full ** 2).sum(axis=1)
  sums[:, :extra] += draws[:, layers * b:]
  squares[:, :extra] += draws[:, layers * b:] ** 2
  q = np.full(b, layers, np.float64)
  q[:extra] += 1
  q = q[None, :, None]
  within = np.maximum(squares - sums ** 2 / q, 0.0) / np.maximum(q - 1, 1)
  if layers == 1:   # only the first S % B rows were drawn twice: pool theirs
    within[:, extra:] = within[:, :extra].mean(axis=1, keepdims=True)
  return np.sqrt((within / q).sum(axis=1)) / b


class ExpectedGradients(_GradientMethod):
  """Expected Gradients (Erion et al. 2021): Integrated Gradients averaged over a background.

  attr_i = E_{b ~ background, a ~ U(0, 1)} [(x_i - b_i) * df(b + a(x - b))/dx_i],
  the expectation of Integrated Gradients over baselines drawn from a sample
  of the reference split (shap's GradientExplainer, Captum's GradientShap
  without noise). Estimated with num_samples (baseline, alpha) draws per
  example (`expected_gradients_draws`): background rows without replacement,
  spread evenly, with alphas stratified per row and across rows. At equal
  gradient rows this had 10-30 % less error against the exact expectation
  (Integrated Gradients against every background row, averaged) than
  independent draws (Erion's estimator, shap's) on the penguin and wide
  benchmark models, most from num_samples >= background_size on. A fixed
  quadrature of a few Gauss-Legendre alphas per baseline did worse than
  either: it spends the rows on fewer baselines, whose spread dominates the
  error, and is biased where ReLU kinks the path (benchmarks/ig_throughput.py
  measures all three). Once num_samples >= background_size every background
  row is used with equal weight, so on a linear model the result is exactly
  w * (x - mean(background)).

  Draws depend only on the seed and the example's id, never on batching.
  baseline_prediction is the mean of f over the background rows this example
  used, so the completeness error |sum(attr) - (f(x) - E f(b))| is the error
  of the alpha draws alone; it shrinks as num_samples grows (zero for a
  linear model). Standard errors (`_draw_errors`) count the spread of the
  draws; they credit neither the alpha strata nor, below background_size
  draws, sampling baselines without replacement, so they err large: 1.0 to
  1.7 times the spread of the estimates over seeds on the ReLU networks
  measured (tests, benchmarks), more on smooth models, where stratified
  alphas gain most.

  Inputs gradients cannot reach (`model.discrete_features`) are held at the
  example's values, in the points and in f(b) alike, and left NaN, as
  Integrated Gradients' discrete='skip' does. Cost per example: num_samples
  gradient rows (`result.steps`) and the background rows' outputs (one
  forward pass over the background when every input is a float, else one
  row per background row used).
  """
  name = 'expected_gradients'
  requires_background = True
  reports_standard_errors = True

  def __init__(self, num_samples: int = 200, background_size: int = 100, seed: int = 0,
               key: Optional[str] = None):
    owner = 'ExpectedGradients'
    self.num_samples = check_int(owner, 'num_samples', num_samples)
    self.background_size = check_int(owner, 'background_size', background_size)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  def _background(self, model, reference) -> np.ndarray:
    background = {k: np.asarray(v)[:self.background_size]
                  for k, v in reference.background.items()}
    missing = [name for name in model.float_features if name not in background]
    if missing or not background or not reference.background_size:
      raise base.ConfigError(f'ExpectedGradients: the background sample has no values for '
                             f'{missing or model.float_features}.')
    if not model.float_features:
      return np.zeros((len(next(iter(background.values()))), 0), np.float32)
    return np.stack([np.asarray(background[name], np.float32).reshape(-1)
                     for name in model.float_features], axis=1)

  def _attribute(self, model, features, reference, target, labels, example_ids):
    matrix, others, targets, prediction = self._prepare(model, features, target)
    background = self._background(model, reference)
    n, f = matrix.shape
    s, b = self.num_samples, len(background)
    rows, alphas, weights = (np.stack(v) for v in zip(*(
        expected_gradients_draws(s, b, np.random.default_rng([self.seed, int(i)]))
        for i in example_ids))) if n else (np.zeros((0, s), np.int64), np.zeros((0, s)),
                                           np.zeros((0, s)))
    # Every (example, draw) is one gradient row, all in one chunked, compiled call.
    example_of = np.repeat(np.arange(n), s)
    baselines = background[rows.reshape(-1)]
    delta = matrix[example_of].astype(np.float64) - baselines
    points = (baselines + alphas.reshape(-1, 1) * delta).astype(np.float32)
    _, grads = model.target_gradients(points, [o[example_of] for o in others],
                                      np.repeat(targets, s))
    draws = (delta * grads.astype(np.float64)).reshape(n, s, f)
    values = np.einsum('ns,nsf->nf', weights, draws)
    errors = _draw_errors(draws, values, weights, b)
    # E f(b) over the rows used (each with equal total weight), discrete inputs at x.
    distinct = np.broadcast_to(np.arange(b), (n, b)) if s >= b else rows
    if model.other_features:
      repeated = np.repeat(np.arange(n), distinct.shape[1])
      outputs = model.predict_split(background[distinct.reshape(-1)],
                                    [o[repeated] for o in others])
      at_background = outputs[np.arange(len(repeated)), np.repeat(targets, distinct.shape[1])]
      baseline_prediction = at_background.reshape(n, -1).astype(np.float64).mean(axis=1)
    else:
      outputs = model.predict_split(background, [])
      baseline_prediction = outputs[:, targets].T[np.arange(n)[:, None], distinct].astype(
          np.float64).mean(axis=1) if n else np.zeros(0)
    result = self._result(model, values, targets, prediction, baseline_prediction,
                          {'background_size': int(b)})
    result.standard_errors = self._full(model, errors)
    result.steps = np.full(n, s, np.int64)
    return result
