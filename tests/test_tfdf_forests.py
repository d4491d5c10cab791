"""TensorFlow Decision Forests models: the trees read from the SavedModel, and Tree SHAP on them.

Each model is trained here (penguins: four measurements and the `island`
string, which the forest splits on as a categorical input) and saved with a
serving signature over tf.Examples, as a TFX Trainer does. References:

- the served model itself, evaluated on hybrid rows over all 2^5 coalitions
  (interventional Tree SHAP of a random forest, whose output is its probability);
- for a boosted classifier the served probabilities are softmax(margin), so the
  centred log-probabilities log p_k - mean_j log p_j equal the centred margins:
  brute force on them checks phi_k - mean_j phi_j;
- the trees walked node by node (path-dependent: Lundberg's recursion).
"""

import numpy as np
import pytest

from tests import forest_fixtures
from tests.test_tree_shap import brute_force_interventional
from tfx_explain.engine import (ForestModelFunction, IntegratedGradients, KernelShap,
                                ReferenceStats, TreeShap, explain, load_model_function)
from tfx_explain.engine import trees
from tfx_explain.engine.model import ModelAccessError

pytest.importorskip('tensorflow_decision_forests')

KINDS = ('random_forest', 'gradient_boosted_trees')


@pytest.fixture(scope='module')
def forests(tmp_path_factory):
  root = tmp_path_factory.mktemp('forests')
  return {kind: forest_fixtures.train_forest(str(root / kind), kind) for kind in KINDS}


@pytest.fixture(scope='module')
def table():
  return forest_fixtures.penguin_table()


def _rows(features, rows):
  return {k: v[rows] for k, v in features.items()}


def _reference(model, features):
  return ReferenceStats.from_features({k: features[k] for k in model.input_names},
                                      model.input_dtypes, background_size=40, seed=1)


@pytest.mark.parametrize('kind', KINDS)
def test_trees_read_from_the_model_reproduce_its_served_output(forests, table, kind):
  model = load_model_function(forests[kind])
  assert isinstance(model, ForestModelFunction)
  assert model.forest.feature_kinds[model.forest.feature_names.index('island')] == 'categorical'
  features, _ = table
  served = model.predict(features)
  computed = model.forest.predict(model.forest_inputs(features))
  assert served.shape == computed.shape == (len(features['island']), 3)
  np.testing.assert_allclose(computed, served, atol=2e-6)
  expected_link = trees.LINK_IDENTITY if kind == 'random_forest' else trees.LINK_SOFTMAX
  assert model.forest.link == expected_link


def _game_values(model, kind, x_row, background, target):
  """The coalition game brute force sums: served outputs (or centred log-probabilities)."""
  names = model.input_names

  def predict(hybrid_rows):
    features = {n: hybrid_rows[:, j] for j, n in enumerate(names)}
    features = {n: (v.astype(np.float32) if model.input_dtypes[n].is_floating else v)
                for n, v in features.items()}
    probabilities = model.predict(features).astype(np.float64)
    if kind == 'random_forest':
      return probabilities
    logs = np.log(probabilities)
    return logs - logs.mean(axis=1, keepdims=True)
  return brute_force_interventional(predict, x_row, background, target)


@pytest.mark.parametrize('kind', KINDS)
def test_interventional_tree_shap_equals_brute_force_on_the_served_model(forests, table, kind):
  model = load_model_function(forests[kind])
  features, _ = table
  rows = _rows(features, np.arange(6))
  reference = _reference(model, features)
  background = reference.background
  result = TreeShap(background_size=12).attribute(model, rows, reference)
  names = model.input_names
  as_objects = lambda columns, n: np.asarray(
      [[columns[name][i] for name in names] for i in range(n)], dtype=object)
  x = as_objects(rows, 6)
  bg = as_objects({k: v[:12] for k, v in background.items()}, 12)
  for i in range(6):
    target = int(result.target[i])
    if kind == 'random_forest':
      reference_values = _game_values(model, kind, x[i], bg, target)
      np.testing.assert_allclose(result.attributions[i], reference_values, atol=1e-6)
    else:
      # phi of every class for this row, centred across classes.
      per_class = np.stack([TreeShap(background_size=12).attribute(
          model, _rows(rows, [i]), reference, target=k).attributions[0] for k in range(3)])
      centred = per_class[target] - per_class.mean(axis=0)
      np.testing.assert_allclose(centred, _game_values(model, kind, x[i], bg, target),
                                 atol=2e-5)
  # Exact: the attributions sum to the output gap.
  assert result.completeness_error.max() < 1e-9
  assert result.output_kind == ('probability' if kind == 'random_forest' else 'logit')


@pytest.mark.parametrize('kind', KINDS)
def test_path_dependent_equals_the_recursion_over_the_trees(forests, table, kind):
  model = load_model_function(forests[kind])
  features, _ = table
  rows = _rows(features, np.arange(10, 16))
  result = TreeShap(algorithm='path_dependent').attribute(model, rows, _reference(model, features))
  x = model.forest.encode(model.forest_inputs(rows))
  column = {n: i for i, n in enumerate(model.input_names)}
  for i in range(len(x)):
    expected = trees.brute_force_path_dependent(model.forest, x[i], int(result.target[i]))
    ours = result.attributions[i, [column[n] for n in model.forest.feature_names]]
    np.testing.assert_allclose(ours, expected, atol=1e-10)
  assert result.completeness_error.max() < 1e-9


def test_kernel_shap_still_explains_a_forest_and_agrees_with_tree_shap(forests, table):
  model = load_model_function(forests['random_forest'])
  features, _ = table
  rows = _rows(features, np.arange(8))
  reference = _reference(model, features)
  results = explain(model, rows, [TreeShap(background_size=40),
                                  KernelShap(num_samples=40, background_size=40)],
                    reference=reference)
  # Five features: 30 coalitions enumerate every one, so Kernel SHAP is exact too.
  np.testing.assert_allclose(results['kernel_shap'].attributions,
                             results['tree_shap'].attributions, atol=1e-6)


def test_gradient_methods_are_refused_with_what_to_use(forests, table):
  model = load_model_function(forests['gradient_boosted_trees'])
  features, _ = table
  with pytest.raises(ValueError, match='TreeShap'):
    IntegratedGradients().attribute(model, _rows(features, np.arange(4)))


def test_trees_that_do_not_reproduce_the_served_output_are_refused(forests, table):
  model = load_model_function(forests['random_forest'])
  features, _ = table
  model.forest.trees[0].value[:] += 0.5     # no longer the served function
  with pytest.raises(ModelAccessError, match='do not reproduce its served output'):
    TreeShap().attribute(model, _rows(features, np.arange(4)), _reference(model, features))


def test_tree_shap_refuses_a_network():
  import tf_keras
  inputs = {'a': tf_keras.Input((1,), name='a')}
  network = tf_keras.Model(inputs, tf_keras.layers.Dense(1, name='not_a_forest')(inputs['a']))
  with pytest.raises(ValueError, match='decision forests'):
    TreeShap().attribute(network_function(network), {'a': np.zeros(3, np.float32)})


def network_function(network):
  from tfx_explain.engine import KerasModelFunction
  return KerasModelFunction(network)


def test_attribution_gen_refuses_gradients_on_a_forest_and_tree_shap_on_a_network(forests):
  from tfx_explain import AttributionConfig
  from tfx_explain.attribution_gen.inputs import check_methods_apply
  from tfx_explain.configurable import ConfigError
  forest = load_model_function(forests['random_forest'])
  with pytest.raises(ConfigError, match=r"\['integrated_gradients'\] need gradients.*TreeShap"):
    check_methods_apply(AttributionConfig(methods=[IntegratedGradients(), TreeShap()]), forest)
  check_methods_apply(AttributionConfig(methods=[TreeShap(), KernelShap()]), forest)
  import tf_keras
  inputs = {'a': tf_keras.Input((1,), name='a')}
  dense = tf_keras.layers.Dense(1, name='not_a_forest')(inputs['a'])
  network = network_function(tf_keras.Model(inputs, dense))
  with pytest.raises(ConfigError, match=r"\['tree_shap'\] read decision-forest trees"):
    check_methods_apply(AttributionConfig(methods=[TreeShap()]), network)


def test_randomisation_check_says_forests_have_no_layers(forests):
  from tfx_explain.configurable import ConfigError
  from tfx_explain.validation.randomization import layer_stages
  with pytest.raises(ConfigError, match='decision forest'):
    layer_stages(load_model_function(forests['random_forest']))


@pytest.mark.parametrize('kind', KINDS)
def test_binary_classifiers_serve_one_probability_and_are_explained_exactly(
    tmp_path, table, kind):
  model = load_model_function(forest_fixtures.train_forest(str(tmp_path), kind, binary=True))
  features, _ = table
  rows = _rows(features, np.arange(5))
  assert model.num_outputs == 1 and model.forest.num_outputs == 1
  np.testing.assert_allclose(model.forest.predict(model.forest_inputs(rows)), model.predict(rows),
                             atol=2e-6)
  reference = _reference(model, features)
  result = TreeShap(background_size=10).attribute(model, rows, reference)
  names = model.input_names
  x = np.asarray([[rows[n][i] for n in names] for i in range(5)], dtype=object)
  bg = np.asarray([[reference.background[n][i] for n in names] for i in range(10)], dtype=object)

  def served_game(hybrid_rows):
    columns = {n: hybrid_rows[:, j] for j, n in enumerate(names)}
    columns = {n: (v.astype(np.float32) if model.input_dtypes[n].is_floating else v)
               for n, v in columns.items()}
    p = model.predict(columns).astype(np.float64)
    return p if kind == 'random_forest' else np.log(p / (1 - p))   # the margin
  for i in range(5):
    np.testing.assert_allclose(result.attributions[i],
                               brute_force_interventional(served_game, x[i], bg, 0), atol=2e-5)
