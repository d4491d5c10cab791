"""Tree SHAP's sums (engine/trees.py) against brute-force Shapley values and shap's TreeExplainer.

Forests here come from scikit-learn, converted node by node: sklearn sends
x <= t left, so its right child is our positive child at the next float above
t. shap reads the same sklearn models natively, so it is an independent
reference; brute force enumerates all 2^F coalitions with the games defined
directly (the trees walked, or the sklearn model evaluated on hybrid rows).
"""

import math

import numpy as np
import pytest

from tfx_explain.engine import trees


def brute_force_interventional(predict, x, background, target):
  """Shapley values of v(S) = mean_r predict(x_S, r_rest)[target], all coalitions."""
  f = len(x)
  values = np.zeros(1 << f)
  for s in range(1 << f):
    mask = np.asarray([(s >> j) & 1 for j in range(f)], bool)
    hybrid = np.where(mask[None], x[None], background)
    values[s] = predict(hybrid)[:, target].mean()
  return trees.exact_shapley_from_values(values, f)


@pytest.fixture(scope='module')
def regression_forest():
  from sklearn.datasets import load_diabetes
  from sklearn.ensemble import RandomForestRegressor
  x, y = load_diabetes(return_X_y=True)
  x = x[:, :8].astype(np.float32).astype(np.float64)   # what sklearn's trees compare
  model = RandomForestRegressor(n_estimators=12, max_depth=7, random_state=0).fit(x, y)
  forest = trees.forest_from_sklearn(model, [f'x{i}' for i in range(8)])
  return model, forest, x


@pytest.fixture(scope='module')
def classification_forest():
  from sklearn.datasets import load_wine
  from sklearn.ensemble import RandomForestClassifier
  x, y = load_wine(return_X_y=True)
  x = x[:, :7].astype(np.float32).astype(np.float64)
  model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=1).fit(x, y)
  forest = trees.forest_from_sklearn(model, [f'x{i}' for i in range(7)])
  return model, forest, x


def test_forest_reproduces_sklearn_predictions(regression_forest, classification_forest):
  model, forest, x = regression_forest
  np.testing.assert_allclose(forest.raw_from_encoded(x)[:, 0], model.predict(x), rtol=1e-12)
  model, forest, x = classification_forest
  np.testing.assert_allclose(forest.raw_from_encoded(x), model.predict_proba(x), atol=1e-12)


def test_path_dependent_equals_brute_force_over_all_coalitions(regression_forest):
  _, forest, x = regression_forest
  rows = x[:6]
  targets = np.zeros(len(rows), np.int64)
  phi, expected = trees.path_dependent_shap(forest, rows, targets)
  for i, row in enumerate(rows):
    np.testing.assert_allclose(phi[i], trees.brute_force_path_dependent(forest, row, 0),
                               atol=1e-9, rtol=1e-9)
  # Completeness: against the covers' mean output.
  raw = forest.raw_from_encoded(rows)[:, 0]
  np.testing.assert_allclose(phi.sum(axis=1), raw - expected, atol=1e-9)


def test_interventional_equals_brute_force_on_the_model_itself(classification_forest):
  model, forest, x = classification_forest
  rows, background = x[:5], x[100:130]
  targets = np.asarray([0, 1, 2, 1, 0])
  phi, expected = trees.interventional_shap(forest, rows, background, targets)
  for i, row in enumerate(rows):
    reference = brute_force_interventional(model.predict_proba, row, background, targets[i])
    np.testing.assert_allclose(phi[i], reference, atol=1e-12)
  np.testing.assert_allclose(expected, model.predict_proba(background)[:, targets].mean(axis=0),
                             atol=1e-12)


def test_matches_shap_tree_explainer_both_algorithms():
  """On continuous features: shap compares in float32, so on data with many tied values
  (diabetes' discretised columns) its interventional values differ from the exact game."""
  import shap
  from sklearn.ensemble import RandomForestRegressor
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 6)).astype(np.float32).astype(np.float64)
  y = 2 * x[:, 0] + x[:, 1] * x[:, 2] + np.sin(3 * x[:, 3])
  model = RandomForestRegressor(n_estimators=8, max_depth=7, random_state=0).fit(x, y)
  forest = trees.forest_from_sklearn(model, [f'x{i}' for i in range(6)])
  rows, background = x[:20], x[200:260]
  targets = np.zeros(len(rows), np.int64)
  ours, _ = trees.path_dependent_shap(forest, rows, targets)
  theirs = shap.TreeExplainer(model, feature_perturbation='tree_path_dependent').shap_values(rows)
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  ours, expected = trees.interventional_shap(forest, rows, background, targets)
  explainer = shap.TreeExplainer(model, data=background, feature_perturbation='interventional')
  np.testing.assert_allclose(ours, explainer.shap_values(rows, check_additivity=False),
                             atol=1e-6)
  np.testing.assert_allclose(expected[0], explainer.expected_value, rtol=1e-6)


def _hand_forest():
  """Two trees over a categorical feature c (codes 0..4) and a numerical one v; the first
  tree tests c twice on one path (a negative branch, then a positive one)."""
  first = trees.Tree(
      feature=[0, -1, 0, 1, -1, -1, -1],
      threshold=[0, 0, 0, 0.5, 0, 0, 0],
      positive=[1, -1, 3, 5, -1, -1, -1],
      negative=[2, -1, 4, 6, -1, -1, -1],
      value=[0, 3.0, 0, 0, -1.0, 2.5, 0.5],
      cover=[20, 6, 14, 9, 5, 4, 5],
      categories=[frozenset({1, 2}), None, frozenset({3}), None, None, None, None])
  second = trees.Tree(
      feature=[1, -1, 0, -1, -1], threshold=[-0.2, 0, 0, 0, 0],
      positive=[2, -1, 3, -1, -1], negative=[1, -1, 4, -1, -1],
      value=[0, 1.5, 0, -2.0, 0.25], cover=[20, 8, 12, 7, 5],
      categories=[None, None, frozenset({0, 4}), None, None])
  return trees.Forest([first, second], ['c', 'v'], ['categorical', 'numerical'], [0.1],
                      dictionaries={'c': {'a': 0, 'b': 1, 'c': 2, 'd': 3, 'e': 4}})


def test_categorical_splits_and_repeated_features_on_a_path():
  forest = _hand_forest()
  features = {'c': np.asarray([b'a', b'b', b'd', b'e', b'zz']),
              'v': np.asarray([0.9, -1.0, 0.7, 0.0, 0.6])}
  x = forest.encode(features)
  assert x[:, 0].tolist() == [0, 1, 3, 4, 0]   # unknown 'zz' -> the out-of-dictionary code
  # Hand evaluation of both trees on the first row (c='a', v=0.9): tree 1 goes
  # negative (a not in {b, c}), positive (a in {d}? no: negative) -> -1.0; tree 2:
  # v >= -0.2, then a in {a, e} -> -2.0.
  assert forest.raw(features)[0, 0] == pytest.approx(0.1 - 1.0 - 2.0)
  targets = np.zeros(len(x), np.int64)
  phi, expected = trees.path_dependent_shap(forest, x, targets)
  for i, row in enumerate(x):
    np.testing.assert_allclose(phi[i], trees.brute_force_path_dependent(forest, row, 0),
                               atol=1e-12)
  background = forest.encode({'c': np.asarray([b'b', b'c', b'd', b'a']),
                              'v': np.asarray([0.2, 0.8, -0.5, 0.55])})
  phi, expected = trees.interventional_shap(forest, x, background, targets)
  for i, row in enumerate(x):
    np.testing.assert_allclose(
        phi[i], brute_force_interventional(forest.raw_from_encoded, row, background, 0),
        atol=1e-12)
  np.testing.assert_allclose(phi.sum(axis=1), forest.raw_from_encoded(x)[:, 0] - expected,
                             atol=1e-12)


def test_product_game_shapley_matches_enumeration():
  rng = np.random.default_rng(3)
  for players in (1, 2, 5, 7):
    a = rng.integers(0, 2, size=(4, players)).astype(float)
    b = rng.uniform(0.05, 1.0, size=(4, players))
    active = np.ones_like(a, bool)
    phi = trees.product_game_shapley(a, b, active)
    for k in range(4):
      values = np.zeros(1 << players)
      for s in range(1 << players):
        values[s] = math.prod(a[k, j] if s >> j & 1 else b[k, j] for j in range(players))
      np.testing.assert_allclose(phi[k], trees.exact_shapley_from_values(values, players),
                                 atol=1e-12)


def test_padding_slots_are_not_players():
  a = np.asarray([[1.0, 0.0, 1.0, 0.0]])
  b = np.asarray([[0.3, 0.6, 0.9, 0.2]])
  padded = trees.product_game_shapley(a, b, np.asarray([[True, True, False, False]]))
  alone = trees.product_game_shapley(a[:, :2], b[:, :2], np.ones((1, 2), bool))
  np.testing.assert_allclose(padded[:, :2], alone, atol=1e-15)
  assert np.all(padded[:, 2:] == 0)


def test_bias_and_widths_are_checked():
  tree = trees.Tree([-1], [0], [-1], [-1], [[1.0, 2.0]], [1.0])
  with pytest.raises(trees.ForestError, match='widths'):
    trees.Forest([tree], [], [], [0.0])
  uncovered = trees.Tree([0, -1, -1], [0.5, 0, 0], [1, -1, -1], [2, -1, -1], [0, 1, 2],
                         [0, 1, 1])
  forest = trees.Forest([uncovered], ['v'], ['numerical'], [0.0])
  x, targets = np.asarray([[0.7]]), np.zeros(1, np.int64)
  with pytest.raises(trees.ForestError, match="no training cover.*'interventional'"):
    trees.path_dependent_shap(forest, x, targets)
  phi, _ = trees.interventional_shap(forest, x, np.asarray([[0.1]]), targets)   # needs no covers
  assert phi[0, 0] == pytest.approx(1.0 - 2.0)


def test_missing_values_are_refused_naming_the_feature():
  forest = _hand_forest()
  with pytest.raises(trees.ForestError, match="forest input 'v' are missing"):
    forest.encode({'c': np.asarray([b'a']), 'v': np.asarray([np.nan])})
  with pytest.raises(trees.ForestError, match="forest input 'c' are missing"):
    forest.encode({'c': np.asarray([b'']), 'v': np.asarray([0.1])})


def test_integer_categories_are_looked_up_as_the_dictionary_keys_them():
  forest = _hand_forest()
  forest.dictionaries['c'] = {'7': 1, '9': 3}
  assert forest.encode({'c': np.asarray([7, 9, 8]), 'v': np.zeros(3)})[:, 0].tolist() == [1, 3, 0]


def test_many_chunks_and_pair_groups_give_the_same_values(regression_forest, monkeypatch):
  _, forest, x = regression_forest
  rows, background = x[:7], x[300:311]
  targets = np.zeros(7, np.int64)
  whole = (trees.path_dependent_shap(forest, rows, targets)[0],
           trees.interventional_shap(forest, rows, background, targets)[0])
  monkeypatch.setattr(trees, '_CHUNK_CELLS', 64)   # a few leaves per chunk, pairs per group
  np.testing.assert_allclose(trees.path_dependent_shap(forest, rows, targets)[0], whole[0],
                             atol=1e-12)
  np.testing.assert_allclose(trees.interventional_shap(forest, rows, background, targets)[0],
                             whole[1], atol=1e-12)


def test_interventional_regression_equals_brute_force(regression_forest):
  model, forest, x = regression_forest
  rows, background = x[:3], x[200:230]
  phi, _ = trees.interventional_shap(forest, rows, background, np.zeros(3, np.int64))
  predict = lambda hybrid: model.predict(hybrid)[:, None]
  for i, row in enumerate(rows):
    np.testing.assert_allclose(phi[i], brute_force_interventional(predict, row, background, 0),
                               atol=1e-9)
