"""Kernel SHAP, sampled Shapley, LIME and permutation importance against exact values."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from tfx_explain import KernelShap, Lime, PermutationImportance, SampledShapley, explain
from tfx_explain.engine.base import ConfigError
from tfx_explain.engine.adapters import CallableModelFunction
from tfx_explain.engine.reference import ReferenceStats
from tfx_explain.engine.shapley import kernel_coalitions

NAMES = [f'x{i}' for i in range(6)]


def interaction_model(names=NAMES):
  """Six features with pairwise and three-way interactions and a nonlinearity."""
  def fn(inputs):
    x = [tf.cast(inputs[n], tf.float32) for n in names]
    return (1.5 * x[0] - x[1] + 0.5 * x[2] * x[3] + tf.tanh(x[4]) * x[5] +
            0.3 * x[0] * x[1] * x[5] + 0.2 * x[3] ** 2)
  return CallableModelFunction(fn, names)


def data(n, seed, names=NAMES):
  rng = np.random.default_rng(seed)
  return {name: rng.normal(size=n).astype(np.float32) for name in names}


def brute_force_shapley(model, features, reference_rows):
  """Textbook Shapley: v(S) = mean over reference rows of f(x_S, r_notS), all 2^F subsets."""
  names = model.input_names
  f = len(names)
  n = len(features[names[0]])
  b = len(reference_rows[names[0]])
  subsets = list(itertools.product([0, 1], repeat=f))
  position = {s: k for k, s in enumerate(subsets)}
  phi = np.zeros((n, f))
  for i in range(n):
    columns = {}
    for j, name in enumerate(names):
      own = np.asarray([features[name][i]] * b, dtype=np.asarray(reference_rows[name]).dtype)
      columns[name] = np.concatenate([own if s[j] else np.asarray(reference_rows[name])
                                      for s in subsets])
    values = model.predict(columns)[:, 0].reshape(len(subsets), b).mean(axis=1)
    for j in range(f):
      for s in subsets:
        if s[j]:
          continue
        size = sum(s)
        weight = math.factorial(size) * math.factorial(f - size - 1) / math.factorial(f)
        with_j = s[:j] + (1,) + s[j + 1:]
        phi[i, j] += weight * (values[position[with_j]] - values[position[s]])
  return phi


def test_kernel_shap_exact_when_budget_covers_all_coalitions():
  model = interaction_model()
  features = data(5, seed=1)
  reference = ReferenceStats.from_features(data(200, seed=2), background_size=30)
  result = KernelShap(num_samples=2048, background_size=30).attribute(model, features, reference)
  assert result.extras['exact'] and result.extras['coalitions'] == 62
  expected = brute_force_shapley(model, features, reference.background)
  np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
  assert result.completeness_error.max() < 1e-5


def test_kernel_shap_sampled_close_to_exact():
  """10 features, 400 of 1022 coalitions sampled: max error < 2% of the largest value."""
  names = [f'x{i}' for i in range(10)]
  def fn(inputs):
    x = [tf.cast(inputs[n], tf.float32) for n in names]
    return (1.5 * x[0] - x[1] + 0.5 * x[2] * x[3] + tf.tanh(x[4]) * x[5] +
            0.3 * x[0] * x[1] * x[5] + 0.8 * x[6] - 0.6 * x[7] * x[8] + 0.4 * x[9])
  model = CallableModelFunction(fn, names)
  features = data(6, seed=3, names=names)
  reference = ReferenceStats.from_features(data(200, seed=4, names=names), background_size=20)
  result = KernelShap(num_samples=400, background_size=20, seed=1).attribute(
      model, features, reference)
  assert not result.extras['exact']
  expected = brute_force_shapley(model, features, reference.background)
  error = np.abs(result.attributions - expected).max() / np.abs(expected).max()
  print(f"kernel shap max relative error {error:.4f}")
  assert error < 0.02, error
  # Efficiency holds exactly whatever the sample.
  assert result.completeness_error.max() < 1e-5


def test_sampled_shapley_matches_exact_against_baseline():
  model = interaction_model()
  features = data(6, seed=5)
  reference = ReferenceStats.from_features(data(100, seed=6))
  result = SampledShapley(num_permutations=256, baseline='mean').attribute(
      model, features, reference)
  baseline = reference.baseline_values('mean', NAMES)
  rows = {n: np.array([baseline[n]], np.float32) for n in NAMES}
  expected = brute_force_shapley(model, features, rows)
  error = np.abs(result.attributions - expected).max() / np.abs(expected).max()
  assert error < 0.03, error
  assert result.completeness_error.max() < 1e-5


def test_kernel_coalitions_weights_and_determinism():
  masks, weights, exact = kernel_coalitions(10, 300, seed=3)
  again, weights_again, _ = kernel_coalitions(10, 300, seed=3)
  assert not exact and len(masks) <= 300
  np.testing.assert_array_equal(masks, again)
  np.testing.assert_array_equal(weights, weights_again)
  assert (masks.sum(axis=1) > 0).all() and (masks.sum(axis=1) < 10).all()


def test_string_features_are_attributed_by_shapley():
  names = ['a', 'b', 'colour']
  dtypes = {'a': tf.float32, 'b': tf.float32, 'colour': tf.string}
  def fn(inputs):
    red = tf.cast(tf.equal(inputs['colour'], b'red'), tf.float32)
    return 2.0 * inputs['a'] + 3.0 * red + inputs['b'] * red
  model = CallableModelFunction(fn, names, input_dtypes=dtypes)
  rng = np.random.default_rng(0)
  pool = {'a': rng.normal(size=50).astype(np.float32), 'b': rng.normal(size=50).astype(np.float32),
          'colour': np.array([b'red', b'blue'] * 25, dtype=object)}
  reference = ReferenceStats.from_features(pool, dtypes, background_size=50)
  features = {'a': np.array([1.0], np.float32), 'b': np.array([2.0], np.float32),
              'colour': np.array([b'red'], dtype=object)}
  result = KernelShap(num_samples=100, background_size=50).attribute(model, features, reference)
  expected = brute_force_shapley(model, features, reference.background)
  np.testing.assert_allclose(result.attributions, expected, atol=1e-5)
  assert result.attributions[0, 2] > 1.0


def test_lime_recovers_linear_weights_exactly_without_ridge_and_shrinks_them_with_it():
  weights = np.array([0.7, -1.2, 2.5, 0.0, 0.3, -0.4], np.float32)
  model = CallableModelFunction(
      lambda x: tf.add_n([weights[i] * x[n] for i, n in enumerate(NAMES)]) + 4.0, NAMES)
  reference = ReferenceStats.from_features(data(300, seed=8))
  features = data(5, seed=9)
  result = Lime(num_samples=500, ridge_alpha=0.0).attribute(model, features, reference)
  # Unpenalised weighted least squares fits a linear function with zero residual, whatever
  # the sample weights: exact up to the float32 model outputs.
  np.testing.assert_allclose(result.extras['coefficients'], np.tile(weights, (5, 1)), atol=1e-6)
  mean = np.array([reference.mean[n] for n in NAMES])
  x = np.stack([features[n] for n in NAMES], axis=1)
  np.testing.assert_allclose(result.attributions, weights * (x - mean), atol=1e-5)
  assert result.completeness_error.max() < 1e-5
  # lime's ridge_alpha=1 (the default) shrinks the slopes: the norm of a ridge solution (in
  # the standardised units it is penalised in) falls as alpha grows.
  shrunk = Lime(num_samples=500).attribute(model, features, reference).extras['coefficients']
  std = np.array([reference.std[n] for n in NAMES])
  assert np.abs(shrunk - weights).max() > 1e-3
  assert (np.linalg.norm(shrunk * std, axis=1) < np.linalg.norm(weights * std)).all()


@pytest.mark.parametrize('ridge_alpha', [0.0, 1.0, 10.0])
def test_lime_fit_is_sklearn_ridge_with_lime_kernel_as_sample_weight(ridge_alpha):
  from lime.lime_tabular import LimeTabularExplainer  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import Ridge  # pylint: disable=g-import-not-at-top
  model = interaction_model()
  train = data(400, seed=10)
  reference = ReferenceStats.from_features(train)
  features = data(4, seed=11)
  s, seed = 300, 3
  result = Lime(num_samples=s, ridge_alpha=ridge_alpha, seed=seed).attribute(
      model, features, reference)
  # The same design as the method: N(mean, std) draws from the seed, standardised.
  means = np.array([reference.mean[n] for n in NAMES])
  stds = np.array([reference.std[n] for n in NAMES])
  normal = np.random.default_rng(seed).standard_normal((s, len(NAMES)))
  perturbed = {n: (means[j] + normal[:, j] * stds[j]).astype(np.float32)
               for j, n in enumerate(NAMES)}
  design = np.stack([(perturbed[n] - means[j]) / stds[j] for j, n in enumerate(NAMES)],
                    axis=1).astype(np.float64)   # float64, or sklearn fits in float32
  y = model.predict(perturbed)[:, 0].astype(np.float64)
  explainer = LimeTabularExplainer(np.stack([train[n] for n in NAMES], axis=1),
                                   mode='regression', discretize_continuous=False)
  assert result.extras['kernel_width'] == explainer.base.kernel_fn.keywords['kernel_width']
  for i in range(4):
    instance = np.array([(float(features[n][i]) - means[j]) / stds[j]
                         for j, n in enumerate(NAMES)])
    kernel = explainer.base.kernel_fn(np.sqrt(((design - instance) ** 2).sum(axis=1)))
    ridge = Ridge(alpha=ridge_alpha).fit(design, y, sample_weight=kernel)
    np.testing.assert_allclose(result.extras['coefficients'][i] * stds, ridge.coef_,
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(result.baseline_prediction[i], ridge.intercept_, rtol=1e-10)


def test_permutation_importance_finds_the_used_feature():
  names = ['used', 'unused']
  def fn(inputs):
    logit = 4.0 * inputs['used']
    return tf.stack([tf.sigmoid(-logit), tf.sigmoid(logit)], axis=1)
  model = CallableModelFunction(fn, names, num_outputs=2, output_kind='probability')
  rng = np.random.default_rng(1)
  pool = {n: rng.normal(size=400).astype(np.float32) for n in names}
  reference = ReferenceStats.from_features(pool, background_size=200)
  features = {n: rng.normal(size=300).astype(np.float32) for n in names}
  labels = (features['used'] > 0).astype(np.int64)
  result = PermutationImportance(num_repeats=3).attribute(model, features, reference,
                                                          labels=labels)
  drop = result.attributions.mean(axis=0)
  assert drop[0] > 0.3 and drop[1] == 0.0
  with pytest.raises(ConfigError, match='needs labels'):
    PermutationImportance().attribute(model, features, reference)
  with pytest.raises(ConfigError, match='outside the model output'):
    PermutationImportance().attribute(model, features, reference, labels=labels + 5)


def test_explain_kernel_shap_background_prefix_is_a_uniform_sample_of_sorted_rows():
  # Training rows stored sorted by x0: a background in stored order would be biased.
  names = ['x0', 'x1', 'x2']
  n, k = 2000, 20
  rng = np.random.default_rng(4)
  train = {name: rng.normal(size=n).astype(np.float32) for name in names}
  order = np.argsort(train['x0'])
  train = {name: values[order] for name, values in train.items()}
  weights = np.array([2.0, -1.0, 0.5])
  model = CallableModelFunction(
      lambda x: 2.0 * x['x0'] - 1.0 * x['x1'] + 0.5 * x['x2'] + 3.0, names)
  features = data(6, seed=5, names=names)
  result = explain(model, features, [KernelShap(background_size=k)], reference=train)
  phi = result['kernel_shap'].attributions
  assert result['kernel_shap'].extras['background_size'] == k
  # A linear model's exact Shapley values are w * (x - mean of the background used).
  x = np.stack([features[name] for name in names], axis=1).astype(np.float64)
  used = ReferenceStats.from_features(train, background_size=100).background
  used_mean = np.array([used[name][:k].astype(np.float64).mean() for name in names])
  np.testing.assert_allclose(phi, weights * (x - used_mean), atol=1e-5)
  # That background's mean of x0 is a sample mean of k of the n rows, drawn without
  # replacement: standard error sd / sqrt(k) * sqrt((n - k) / (n - 1)), about 0.22 here.
  # Stated bound: within 4 standard errors of the training mean (stored-order: -1.57).
  implied = (x - phi / weights)[:, 0]
  x0 = train['x0'].astype(np.float64)
  standard_error = x0.std() / np.sqrt(k) * np.sqrt((n - k) / (n - 1))
  print(f'background mean of x0 {implied.mean():.3f}, training mean {x0.mean():.3f}, '
        f'standard error {standard_error:.3f}')
  assert np.abs(implied - x0.mean()).max() < 4 * standard_error


def test_explain_permutation_importance_does_not_depend_on_how_rows_are_split():
  names = ['used', 'other']
  def fn(inputs):
    logit = 3.0 * inputs['used'] + inputs['other']
    return tf.stack([tf.sigmoid(-logit), tf.sigmoid(logit)], axis=1)
  model = CallableModelFunction(fn, names, num_outputs=2, output_kind='probability')
  rng = np.random.default_rng(2)
  train = {n: rng.normal(size=500).astype(np.float32) for n in names}
  rows = {n: rng.normal(size=200).astype(np.float32) for n in names}
  labels = (rows['used'] + 0.3 * rng.normal(size=200) > 0).astype(np.int64)
  method = PermutationImportance(num_repeats=2)

  def run(features, y, **kwargs):
    return explain(model, features, [method], reference=train, labels=y,
                   **kwargs)['permutation_importance'].attributions

  whole = run(rows, labels)
  halves = np.concatenate([run({n: v[:100] for n, v in rows.items()}, labels[:100]),
                           run({n: v[100:] for n, v in rows.items()}, labels[100:])])
  print(f'rows that differ between one call and two: {(whole != halves).any(axis=1).sum()}')
  np.testing.assert_array_equal(whole, halves)
  # A row's ids come from its values, so its draws follow it to any position.
  order = rng.permutation(200)
  shuffled = run({n: v[order] for n, v in rows.items()}, labels[order])
  np.testing.assert_array_equal(shuffled, whole[order])
  # Ids given are used as given.
  ids = np.arange(1000, 1200)
  reference = ReferenceStats.from_features(train, background_size=100)
  np.testing.assert_array_equal(
      run(rows, labels, example_ids=ids),
      method.attribute(model, rows, reference, labels=labels, example_ids=ids).attributions)


@pytest.mark.parametrize('factory, message', [
    (lambda: KernelShap(num_samples=0), 'num_samples must be an integer'),
    (lambda: KernelShap(background_size=-1), 'background_size'),
    (lambda: SampledShapley(baseline='max'), 'baseline must be one of'),
    (lambda: Lime(kernel_width=-1.0), 'kernel_width'),
    (lambda: PermutationImportance(metric='auc'), 'metric must be one of'),
])
def test_bad_options_are_named(factory, message):
  with pytest.raises(ConfigError, match=message):
    factory()
