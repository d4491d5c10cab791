"""Gradient methods against closed forms."""

import numpy as np
import pytest
import tensorflow as tf

from tfx_explain import GradientTimesInput, IntegratedGradients, SmoothGrad, VanillaGradients
from tfx_explain.engine.base import ConfigError
from tfx_explain.engine.gradients import integration_nodes
from tfx_explain.engine.adapters import CallableModelFunction
from tfx_explain.engine.reference import ReferenceStats

NAMES = ['a', 'b', 'c', 'd']
W = np.array([0.5, -1.5, 2.0, 0.25], np.float32)


def _stack(inputs):
  return tf.stack([tf.cast(inputs[n], tf.float32) for n in NAMES], axis=1)


def linear_model():
  return CallableModelFunction(lambda x: tf.reduce_sum(_stack(x) * W, axis=1) + 1.0, NAMES)


def quadratic_model():
  a = np.array([[1.0, 0.5, 0, 0], [0.5, -2.0, 0.3, 0], [0, 0.3, 0.7, 0.1], [0, 0, 0.1, 1.5]],
               np.float32)
  def fn(inputs):
    x = _stack(inputs)
    return tf.reduce_sum((x @ a) * x, axis=1) + tf.reduce_sum(x * W, axis=1)
  return CallableModelFunction(fn, NAMES)


def data(n=16, seed=0):
  rng = np.random.default_rng(seed)
  return {name: rng.normal(size=n).astype(np.float32) for name in NAMES}


def matrix(features):
  return np.stack([features[n] for n in NAMES], axis=1).astype(np.float64)


def test_ig_linear_equals_weights_times_delta():
  features = data()
  reference = ReferenceStats.from_features(features)
  result = IntegratedGradients(steps=8, baseline='mean').attribute(
      linear_model(), features, reference)
  mean = np.array([reference.mean[n] for n in NAMES])
  expected = W * (matrix(features) - mean)
  np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
  assert result.completeness_error.max() < 1e-5


@pytest.mark.parametrize('baseline', ['zeros', 'median', {'a': 1.0, 'b': -1.0}])
def test_ig_linear_baselines(baseline):
  features = data()
  reference = ReferenceStats.from_features(features)
  result = IntegratedGradients(steps=4, baseline=baseline).attribute(
      linear_model(), features, reference)
  values = reference.baseline_values(baseline, NAMES)
  base = np.array([values[n] for n in NAMES], np.float64)
  np.testing.assert_allclose(result.attributions, W * (matrix(features) - base), atol=1e-5)


def test_ig_quadratic_exact_with_trapezoid():
  features = data(seed=1)
  model = quadratic_model()
  result = IntegratedGradients(steps=2, baseline='zeros', rule='trapezoid').attribute(
      model, features)
  # Gradient is linear along the path, so two trapezoid points integrate it exactly.
  assert result.completeness_error.max() < 1e-4
  assert np.abs(result.attributions.sum(axis=1) -
                (result.prediction - result.baseline_prediction)).max() < 1e-4


def test_ig_quadratic_closed_form():
  features = data(seed=2)
  model = quadratic_model()
  a = np.array([[1.0, 0.5, 0, 0], [0.5, -2.0, 0.3, 0], [0, 0.3, 0.7, 0.1], [0, 0, 0.1, 1.5]])
  x = matrix(features)
  # f = x'Ax + w'x, baseline 0: grad at t x = 2 t A x + w; integral = A x + w.
  expected = x * (x @ a + W)
  for rule in ('trapezoid', 'gauss_legendre'):
    result = IntegratedGradients(steps=3, baseline='zeros', rule=rule).attribute(model, features)
    np.testing.assert_allclose(result.attributions, expected, atol=1e-4)


def test_riemann_converges_and_reports_error():
  features = data(seed=3)
  model = CallableModelFunction(lambda x: tf.sin(3 * _stack(x)[:, 0]) * _stack(x)[:, 1], NAMES)
  coarse = IntegratedGradients(steps=4, baseline='zeros', rule='riemann_left').attribute(model, features)
  fine = IntegratedGradients(steps=256, baseline='zeros', rule='gauss_legendre').attribute(model, features)
  assert fine.completeness_error.max() < 1e-4
  assert coarse.completeness_error.mean() > fine.completeness_error.mean()


def test_integration_nodes_integrate_polynomials():
  for rule, steps, degree in [('trapezoid', 50, 1), ('gauss_legendre', 4, 7),
                              ('riemann_middle', 64, 1)]:
    alphas, weights = integration_nodes(steps, rule)
    assert np.sum(weights * alphas ** degree) == pytest.approx(1 / (degree + 1), abs=1e-6)


def test_targets_for_classifier():
  def fn(inputs):
    x = _stack(inputs)
    return tf.nn.softmax(tf.stack([x[:, 0], x[:, 1], -x[:, 0]], axis=1))
  model = CallableModelFunction(fn, NAMES, num_outputs=3, output_kind='probability')
  features = data()
  predicted = IntegratedGradients(steps=16).attribute(model, features)
  np.testing.assert_array_equal(predicted.target, np.argmax(model.predict(features), axis=1))
  fixed = IntegratedGradients(steps=16).attribute(model, features, target=2)
  assert (fixed.target == 2).all() and fixed.output_kind == 'probability'
  with pytest.raises(ConfigError, match='outside the model output'):
    IntegratedGradients().attribute(model, features, target=5)


def test_gradient_times_input_and_vanilla():
  features = data()
  model = linear_model()
  grads = VanillaGradients().attribute(model, features)
  np.testing.assert_allclose(grads.attributions, np.tile(W, (16, 1)), atol=1e-6)
  gxi = GradientTimesInput().attribute(model, features)
  np.testing.assert_allclose(gxi.attributions, W * matrix(features), atol=1e-5)


def test_smoothgrad_is_deterministic_and_unbiased_for_linear():
  features = data()
  model = linear_model()
  a = SmoothGrad(num_samples=20, seed=3).attribute(model, features)
  b = SmoothGrad(num_samples=20, seed=3).attribute(model, features)
  np.testing.assert_array_equal(a.attributions, b.attributions)
  np.testing.assert_allclose(a.attributions, np.tile(W, (16, 1)), atol=1e-5)
  # Same examples batched differently give the same values.
  half = {k: v[:5] for k, v in features.items()}
  c = SmoothGrad(num_samples=20, seed=3).attribute(model, half, ReferenceStats.from_features(features))
  d = SmoothGrad(num_samples=20, seed=3).attribute(model, features, ReferenceStats.from_features(features))
  np.testing.assert_allclose(c.attributions, d.attributions[:5], rtol=1e-6)


def _flag_model():
  """f = 2a + [c == 'x'] * b, with a string input c and an unused float d."""
  dtypes = {'a': tf.float32, 'b': tf.float32, 'c': tf.string, 'd': tf.float32}

  def fn(inputs):
    flag = tf.cast(tf.equal(inputs['c'], b'x'), tf.float32)
    return 2 * tf.cast(inputs['a'], tf.float32) + flag * tf.cast(inputs['b'], tf.float32)

  features = data()
  features['c'] = np.array([b'x'] * 10 + [b'y'] * 6, dtype=object)   # mode: 'x'
  return CallableModelFunction(fn, NAMES, input_dtypes=dtypes), features


def test_string_input_gets_the_closed_form_step_attribution():
  model, features = _flag_model()
  assert model.discrete_features == ['c', 'd'], 'strings, and a float no gradient reaches'
  result = IntegratedGradients(steps=8, baseline='mean').attribute(model, features)
  a_bar, b_bar = features['a'].mean(), features['b'].mean()
  flag_x = (features['c'] == b'x').astype(np.float64)
  flag_b = 1.0   # the baseline of c is its most frequent value, 'x'
  a, b = features['a'].astype(np.float64), features['b'].astype(np.float64)
  expected = np.stack([2 * (a - a_bar), 0.5 * (flag_x + flag_b) * (b - b_bar),
                       0.5 * (flag_x - flag_b) * (b + b_bar), np.zeros_like(a)], 1)
  np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-5)
  assert result.skipped_features == [] and not np.isnan(result.attributions).any()
  # Complete against the whole baseline (c at 'x' too), not only the float part.
  np.testing.assert_allclose(result.baseline_prediction, 2 * a_bar + flag_b * b_bar, rtol=1e-5)
  assert result.completeness_error.max() < 1e-4
  assert result.extras['discrete_shapley'] == 'exact'


def test_discrete_skip_leaves_string_inputs_nan():
  model, features = _flag_model()
  result = IntegratedGradients(steps=8, discrete='skip').attribute(model, features)
  assert result.skipped_features == ['c', 'd']
  assert np.isnan(result.attributions[:, 2]).all()
  assert not np.isnan(result.attributions[:, [0, 1]]).any()
  # Compared with f(b_float, x_c): complete along the float path alone.
  assert result.completeness_error.max() < 1e-4


def test_bucketised_float_is_stepped_not_differentiated():
  """floor() cuts the gradient: a is a discrete input, attributed its exact step."""
  def fn(inputs):
    return 3.0 * tf.floor(inputs['a']) + inputs['b']
  model = CallableModelFunction(fn, ['a', 'b'])
  rng = np.random.default_rng(0)
  features = {'a': rng.uniform(0, 5, 12).astype(np.float32),
              'b': rng.normal(size=12).astype(np.float32)}
  assert model.float_features == ['b'] and model.discrete_features == ['a']
  result = IntegratedGradients(steps=4, baseline='mean').attribute(model, features)
  expected_a = 3.0 * (np.floor(features['a']) - np.floor(features['a'].mean()))
  np.testing.assert_allclose(result.attributions[:, 0], expected_a, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(result.attributions[:, 1], features['b'] - features['b'].mean(),
                             rtol=1e-5, atol=1e-5)
  # Pure gradient methods cannot attribute it, and say so with NaN.
  from tfx_explain import VanillaGradients  # pylint: disable=g-import-not-at-top
  gradients = VanillaGradients().attribute(model, features)
  assert np.isnan(gradients.attributions[:, 0]).all()
  np.testing.assert_allclose(gradients.attributions[:, 1], 1.0)


def test_many_discrete_inputs_are_sampled_exactly_for_pairwise_interactions(monkeypatch):
  """12 stepped inputs with a pairwise interaction: antithetic sampling is exact for it."""
  from tfx_explain.engine import shapley  # pylint: disable=g-import-not-at-top
  names = [f'c{i}' for i in range(12)]

  def fn(inputs):
    steps = [tf.floor(inputs[n]) for n in names]
    return tf.add_n([(i + 1.0) * s for i, s in enumerate(steps)]) + 4.0 * steps[0] * steps[1]
  model = CallableModelFunction(fn, names)
  rng = np.random.default_rng(1)
  features = {n: rng.uniform(0, 3, 6).astype(np.float32) for n in names}
  result = IntegratedGradients(steps=2, seed=3).attribute(model, features)
  assert result.extras['discrete_shapley'] == 'sampled'
  assert result.completeness_error.max() < 1e-4
  # Exact values by enumerating all 4096 coalitions (no float inputs here): the same
  # subset Shapley IG uses, with its exact-enumeration limit raised to all 12 inputs.
  baseline = {n: float(np.mean(features[n])) for n in names}
  monkeypatch.setattr(shapley, 'MAX_EXACT_PLAYERS', len(names))
  exact, _, _, enumerated = shapley.subset_shapley(model, features, baseline, range(len(names)),
                                                   False, result.target)
  assert enumerated
  # Each permutation is paired with its reverse, which makes games with interactions of
  # order <= 2 exact: the sampled steps equal the brute-force values, pair included.
  np.testing.assert_allclose(result.attributions, exact, rtol=1e-5, atol=1e-5)
  assert not np.allclose(exact[:, 0], 1.0 * (np.floor(features['c0']) -
                                             np.floor(baseline['c0']))), 'the pair interacts'


@pytest.mark.parametrize('kwargs, message', [
    ({'steps': 1}, 'steps must be an integer >= 2'),
    ({'baseline': 'average'}, 'baseline must be one of'),
    ({'rule': 'simpson'}, 'rule must be one of'),
])
def test_bad_options_are_named(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    IntegratedGradients(**kwargs)


def test_unknown_baseline_feature_is_named():
  features = data()
  with pytest.raises(ConfigError, match="unknown feature.*'zz'"):
    IntegratedGradients(baseline={'zz': 1.0}).attribute(linear_model(), features)
