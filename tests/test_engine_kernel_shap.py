"""Kernel SHAP's coalition design, estimator and standard errors against exact Shapley values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfx_explain import KernelShap, SampledShapley
from tfx_explain.engine.adapters import CallableModelFunction
from tfx_explain.engine.base import ConfigError
from tfx_explain.engine.reference import ReferenceStats
from tfx_explain.engine.shapley import _GameFit  # pylint: disable=protected-access
from tfx_explain.engine.shapley import (CoalitionSequence, coalition_values, kernel_regression,
                                        shapley_kernel_weight)
from tests.test_engine_model_agnostic import brute_force_shapley, data


def mlp(num_features, seed=0, hidden=32):
  """A tanh MLP: interactions of every order, like a trained network's."""
  names = [f'x{i}' for i in range(num_features)]
  rng = np.random.default_rng(seed)
  w1 = (rng.normal(size=(num_features, hidden)) / np.sqrt(num_features)).astype(np.float32)
  w2 = rng.normal(size=(hidden, 1)).astype(np.float32)

  def fn(inputs):
    x = tf.stack([tf.cast(inputs[n], tf.float32) for n in names], axis=1)
    return tf.tanh(x @ w1) @ w2
  return CallableModelFunction(fn, names), names


def setting(model, names, examples=8, background=20):
  features = data(examples, seed=3, names=names)
  reference = ReferenceStats.from_features(data(200, seed=4, names=names),
                                           background_size=background)
  return features, reference, brute_force_shapley(model, features, reference.background)


def polynomial_model(num_features, order):
  """sum_j a_j x_j + products of `order` consecutive features: a game of that order."""
  names = [f'x{i}' for i in range(num_features)]
  rng = np.random.default_rng(7)
  linear = rng.normal(size=num_features).astype(np.float32)

  def fn(inputs):
    x = [tf.cast(inputs[n], tf.float32) for n in names]
    total = sum(float(linear[j]) * x[j] for j in range(num_features))
    for j in range(num_features - order + 1):
      term = x[j]
      for k in range(1, order):
        term = term * x[j + k]
      total += 0.7 * term
    return total
  return CallableModelFunction(fn, names), names


def test_designs_for_growing_budgets_are_prefixes_of_one_another():
  sequence = CoalitionSequence(12, seed=5)
  small, large = sequence.design(300), CoalitionSequence(12, seed=5).design(900)
  assert len(small.masks) == 300 and len(large.masks) == 900
  assert {m.tobytes() for m in small.masks} <= {m.tobytes() for m in large.masks}
  # Allocations only grow, and each stratum's units are distinct.
  for budget in range(2, 4094, 97):
    lower, upper = sequence.allocation(budget), sequence.allocation(budget + 97)
    assert all(lower[p] <= upper[p] for p in lower)
  assert len({m.tobytes() for m in large.masks}) == len(large.masks)
  # Complements sit next to each other: every coalition's complement is in the design.
  keys = {m.tobytes() for m in large.masks}
  assert all((~m).tobytes() in keys for m in large.masks)


def test_sampled_units_hold_every_player_about_equally_often():
  sequence = CoalitionSequence(12, seed=1)
  units = sequence.units(4, 120)   # size-4 coalitions: 120 of 495
  counts = np.bincount(np.asarray(units).reshape(-1), minlength=12)
  # Cut from permutations three disjoint blocks at a time: every player 40 times, give or
  # take the repeats skipped. Independent draws spread the counts over about 17 (the
  # range of 12 binomials of sd 5.2).
  assert counts.max() - counts.min() <= 6, counts
  assert len(set(units)) == 120


def test_small_strata_are_enumerated_first_and_weighted_exactly():
  design = CoalitionSequence(10, seed=0).design(100)
  # Sizes 1 and 9: 10 pairs, all in; the rest of the budget is sampled.
  assert design.sampled[1] == design.population[1] == 10
  assert not design.exact and 1 < design.sampled[2] < design.population[2]
  # Each size's weights add up to the kernel's whole mass on it, sampled or not.
  sizes = design.masks.sum(axis=1)
  for size in range(1, 10):
    assert design.weights[sizes == size].sum() == pytest.approx(
        math.comb(10, size) * shapley_kernel_weight(10, size))


def test_paired_coalitions_make_kernel_shap_exact_for_pairwise_games():
  """Covert & Lee 2021: with complements paired, games of order two come out exact."""
  model, names = polynomial_model(8, order=2)
  features, reference, exact = setting(model, names)
  paired = KernelShap(num_samples=40, background_size=20, seed=1).attribute(
      model, features, reference)
  unpaired = KernelShap(num_samples=40, background_size=20, seed=1, paired=False).attribute(
      model, features, reference)
  assert not paired.extras['exact'] and paired.steps.tolist() == [40] * 8
  np.testing.assert_allclose(paired.attributions, exact, atol=2e-5)
  assert paired.standard_errors.max() < 1e-4
  assert np.abs(unpaired.attributions - exact).max() > 1e-2


def test_a_three_way_fit_is_exact_for_three_way_games_where_an_additive_one_is_not():
  model, names = polynomial_model(7, order=3)
  features, reference, exact = setting(model, names)
  kwargs = dict(num_samples=100, background_size=20, seed=2)
  three = KernelShap(interactions=3, **kwargs).attribute(model, features, reference)
  additive = KernelShap(interactions=1, **kwargs).attribute(model, features, reference)
  assert three.extras['interactions'] == 3 and additive.extras['interactions'] == 1
  np.testing.assert_allclose(three.attributions, exact, atol=5e-5)
  assert np.abs(additive.attributions - exact).max() > 1e-2


def test_full_enumeration_is_exact_at_every_interaction_order():
  model, names = mlp(6)
  features, reference, exact = setting(model, names)
  for interactions in (1, 2, 3):
    result = KernelShap(num_samples=62, background_size=20, interactions=interactions).attribute(
        model, features, reference)
    assert result.extras['exact']
    np.testing.assert_allclose(result.attributions, exact, atol=1e-5)
    np.testing.assert_array_equal(result.standard_errors, 0.0)


def shap_errors(model, names, features, reference, exact, budget, seeds):
  import shap  # pylint: disable=g-import-not-at-top
  table = np.stack([features[n] for n in names], axis=1)
  background = np.stack([reference.background[n] for n in names], axis=1)
  explainer = shap.KernelExplainer(
      lambda rows: model.predict({n: rows[:, j] for j, n in enumerate(names)})[:, 0], background)
  errors = []
  for seed in seeds:
    np.random.seed(seed)
    values = explainer.shap_values(table, nsamples=budget, l1_reg=False, silent=True)
    errors.append(np.abs(np.asarray(values) - exact).mean())
  return float(np.mean(errors))


def engine_errors(model, features, reference, exact, budget, seeds, **kwargs):
  return float(np.mean([np.abs(KernelShap(num_samples=budget, background_size=20, seed=seed,
                                          **kwargs).attribute(model, features, reference)
                               .attributions - exact).mean() for seed in seeds]))


@pytest.mark.parametrize('num_features,budget', [(6, 32), (12, 1024)])
def test_half_of_shaps_error_at_the_same_budget(num_features, budget):
  """Mean |error| against exact values, averaged over fixed seeds (shap: new draws per example)."""
  model, names = mlp(num_features)
  features, reference, exact = setting(model, names)
  ours = engine_errors(model, features, reference, exact, budget, range(8))
  theirs = shap_errors(model, names, features, reference, exact, budget, range(4))
  print(f'{num_features} features, {budget} coalitions: engine {ours:.2e}, shap {theirs:.2e}')
  assert ours <= 0.5 * theirs


def test_standard_errors_match_the_spread_of_estimates_over_seeds():
  model, names = mlp(10)
  features, reference, _ = setting(model, names)
  runs = [KernelShap(num_samples=200, background_size=20, seed=seed).attribute(
      model, features, reference) for seed in range(30)]
  spread = np.std([r.attributions for r in runs], axis=0, ddof=1).mean()
  reported = np.mean([r.standard_errors for r in runs])
  # A factor of two off (a missing pair correlation, no finite-population term) fails.
  assert 0.75 < reported / spread < 1.35, (reported, spread)


def test_auto_budget_stops_each_example_once_its_errors_are_below_target():
  model, names = mlp(10)
  features, reference, exact = setting(model, names, examples=12)
  target = 1e-2   # reached at 128 to 512 coalitions by these examples
  method = KernelShap(num_samples='auto', target_error=target, background_size=20, seed=0,
                      initial_samples=32, max_samples=1022)
  result = method.attribute(model, features, reference)
  below = result.standard_errors.max(axis=1) <= target
  assert (below | (result.steps == 1022)).all()
  assert len(set(result.steps.tolist())) > 1, 'examples of different difficulty stop apart'
  # The errors are honest: the estimates are within a few standard errors of exact values.
  sampled = result.standard_errors > 0
  z = np.abs(result.attributions - exact)[sampled] / result.standard_errors[sampled]
  assert np.mean(z < 2.0) > 0.85, np.mean(z < 2.0)
  # An example stops where it would stop alone, whatever else is in the batch.
  order = np.arange(12)[::-1][:5]
  alone = method.attribute(model, {k: v[order] for k, v in features.items()}, reference)
  np.testing.assert_array_equal(alone.steps, result.steps[order])
  np.testing.assert_allclose(alone.attributions, result.attributions[order], rtol=1e-5,
                             atol=1e-6)


def test_fixed_budget_results_do_not_depend_on_the_batch():
  model, names = mlp(9)
  features, reference, _ = setting(model, names)
  method = KernelShap(num_samples=120, background_size=20, seed=4)
  whole = method.attribute(model, features, reference)
  part = method.attribute(model, {k: v[3:6] for k, v in features.items()}, reference)
  # Equal up to float32 rounding of the model on batches of other sizes.
  np.testing.assert_allclose(part.attributions, whole.attributions[3:6], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(part.standard_errors, whole.standard_errors[3:6], rtol=1e-4,
                             atol=1e-7)


def test_standard_errors_of_the_regression_against_a_direct_formula():
  """Order 1, paired units: the stratified variance of the linearised estimator by hand."""
  model, names = mlp(6)
  features, reference, _ = setting(model, names, examples=3)
  design = CoalitionSequence(6, seed=3).design(44)   # sizes 1/5 enumerated; 2/4 and 3 sampled
  sampled = [p for p in design.population if design.sampled[p] < design.population[p]]
  assert sampled == [2, 3]
  targets = np.zeros(3, np.int32)
  values = coalition_values(model, features, reference.background, design.masks, targets)
  full = model.predict(features)[:, 0].astype(np.float64)
  empty = np.full(3, model.predict(reference.background)[:, 0].mean())
  phi, errors = kernel_regression(design.masks, design.weights, values, full, empty, design)
  # By hand: influence of each coalition on phi (finite differences of the linear
  # solve), residuals, per-unit sums, stratified variance with the population correction.
  eps = 1e-6
  base_phi = phi
  influence = np.zeros((len(design.masks), 3, 6))
  for c in range(len(design.masks)):
    bumped = values.copy()
    bumped[:, c] += eps
    influence[c] = (kernel_regression(design.masks, design.weights, bumped, full, empty)[0]
                    - base_phi) / eps
  z = design.masks.astype(float)
  residual = (values - empty[:, None]) - phi @ z.T
  fit = _GameFit(design.masks, 1)
  weighted = fit.basis * design.weights[:, None]
  gram_inverse = np.linalg.pinv(fit.basis.T @ weighted)
  ones = np.ones(6)
  k = gram_inverse @ ones / (ones @ gram_inverse @ ones)
  solve = gram_inverse @ (np.eye(6) - np.outer(k, ones)).T
  leverage = np.einsum('st,st->s', fit.basis @ solve, fit.basis) * design.weights
  residual = residual / (1 - leverage)
  variance = 0.0
  for stratum in sampled:
    units = np.nonzero(design.unit_stratum == stratum)[0]
    g = np.stack([sum(influence[c] * residual[:, c][:, None]
                      for c in np.nonzero(design.unit == u)[0]) for u in units])
    c, population = len(units), design.population[stratum]
    variance = variance + (1 - c / population) * c * g.var(axis=0, ddof=1)
  np.testing.assert_allclose(errors, np.sqrt(variance), rtol=1e-3)


def test_sampled_shapley_standard_errors_count_an_order_and_its_reverse_as_one_draw():
  model, names = mlp(8)
  features, reference, _ = setting(model, names)
  runs = [SampledShapley(num_permutations=16, seed=seed).attribute(model, features, reference)
          for seed in range(30)]
  spread = np.std([r.attributions for r in runs], axis=0, ddof=1).mean()
  reported = np.mean([r.standard_errors for r in runs])
  assert 0.75 < reported / spread < 1.35, (reported, spread)


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_samples='auto'), 'needs target_error'),
    (dict(num_samples='auto', target_error=0.0), 'target_error must be a number > 0'),
    (dict(sampler='uniform'), "sampler must be one of \\['leverage', 'kernel'\\]"),
    (dict(interactions=4), 'interactions must be one of'),
])
def test_bad_kernel_shap_settings_are_named(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    KernelShap(**kwargs)


def test_kernel_shap_settings_round_trip_through_the_config():
  method = KernelShap(num_samples='auto', target_error=0.01, sampler='kernel', paired=False,
                      interactions=3, seed=4)
  again = KernelShap.from_json_dict(method.to_json_dict())
  assert again.to_json_dict() == method.to_json_dict()
  assert (again.num_samples, again.target_error, again.sampler, again.paired,
          again.interactions) == ('auto', 0.01, 'kernel', False, 3)
