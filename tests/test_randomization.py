"""The model randomisation sanity check: cascading re-draws, self-similarity, input invariance.

On the penguin model AttributionGen explained (the session fixtures), on TFX's own
penguin example restored from tf.saved_model.save (its Transform layer in front), and
on small in-memory models where a property needs no artifacts.
"""

import json
import os

import numpy as np
import pytest

from tfx_explain import (GradientTimesInput, IntegratedGradients, KernelShap,
                         ModelRandomizationCheck, ValidationConfig, VanillaGradients)
from tfx_explain.configurable import ConfigError
from tfx_explain.validation import randomization
from tfx_explain.validation.context import AttributionsView, CheckContext
from tests import attributions_fixture

PENGUIN_LAYERS = ['probabilities', 'dense_1', 'dense']   # trainable, top down


def run(check, view, model_path=None):
  context = CheckContext(view, None, model_path)
  check.validate(context)
  return check.run(context)


def pipeline_randomization_check(**overrides):
  """The penguin pipeline's ModelRandomizationCheck (its max_correlation), with overrides."""
  from tfx_explain.pipelines.penguin import pipeline as penguin_pipeline  # pylint: disable=g-import-not-at-top
  [check] = [c for c in penguin_pipeline.default_validation_config().checks
             if isinstance(c, ModelRandomizationCheck)]
  settings = dict(method=check.method, max_correlation=check.max_correlation,
                  num_examples=check.num_examples, seed=check.seed)
  settings.update(overrides)
  return ModelRandomizationCheck(**settings)


@pytest.fixture
def penguin(penguin_artifacts, penguin_run):
  """(attributions view, model path) of the penguin run."""
  output, _ = penguin_run
  return (AttributionsView(output.uri, 'eval'),
          os.path.join(penguin_artifacts.model_uri, 'Format-Serving'))


def test_model_randomization_passes_the_randomised_model_below_the_pipelines_bar(penguin):
  view, model_path = penguin
  check = pipeline_randomization_check(num_examples=20)
  assert check.max_correlation == 0.9 and check.cascading
  [result] = run(check, view, model_path=model_path)
  assert result.passed and result.value < check.max_correlation
  assert result.threshold == check.max_correlation and result.comparison == '<='
  # Every stage, cumulative from the top layer down; the normalisation layers have
  # no trainable weights and the string lookups none at all: they are not stages.
  stages = result.details['stages']
  assert [s['layer'] for s in stages] == PENGUIN_LAYERS
  assert [s['layers'] for s in stages] == [PENGUIN_LAYERS[:k] for k in (1, 2, 3)]
  assert all(s['changed'] and s['similarity'] < check.max_correlation for s in stages)
  assert result.value == max(s['similarity'] for s in stages)
  assert result.details['self_similarity'] == 1.0
  assert result.details['layers_with_weights'] == 3
  assert result.examples == 20 and 'self-similarity 1.000000' in result.message
  # The validator writes results as JSON: the details travel with them.
  assert json.loads(json.dumps(result.to_dict(), allow_nan=False))['details'] == result.details


def test_without_cascading_only_the_top_layer_is_redrawn(penguin):
  view, model_path = penguin
  [result] = run(pipeline_randomization_check(num_examples=20, cascading=False), view,
                 model_path=model_path)
  assert [s['layers'] for s in result.details['stages']] == [['probabilities']]
  assert result.passed and "'probabilities'" in result.message


def test_max_stages_stops_the_cascade(penguin):
  view, model_path = penguin
  [result] = run(pipeline_randomization_check(num_examples=20, max_stages=2), view,
                 model_path=model_path)
  assert [s['layer'] for s in result.details['stages']] == PENGUIN_LAYERS[:2]


def test_a_randomiser_that_leaves_weights_unchanged_makes_the_check_fail(penguin, monkeypatch):
  """A no-op re-draw: both models attribute alike, every stage scores 1 and fails the bound."""
  view, model_path = penguin
  monkeypatch.setattr(randomization, 'randomize_layer', lambda variables, rng: None)
  [result] = run(pipeline_randomization_check(num_examples=20), view, model_path=model_path)
  assert not result.passed
  stages = result.details['stages']
  assert len(stages) == 3
  for stage in stages:
    assert stage['similarity'] == pytest.approx(1.0, abs=1e-9) and not stage['changed']
  assert result.value == pytest.approx(1.0, abs=1e-9)
  assert f'did not change the weights of {PENGUIN_LAYERS}' in result.message
  assert 'similarity above 0.9' in result.message


def test_input_invariance_holds_for_the_mean_baseline_of_the_explained_method(penguin):
  """The artifact's Integrated Gradients compares with the mean: the shift moves it too."""
  view, model_path = penguin
  assert view.method_config('integrated_gradients')['baseline'] == 'mean'
  results = run(pipeline_randomization_check(num_examples=20, input_invariance=True,
                                             max_stages=1), view, model_path=model_path)
  assert [r.check for r in results] == ['model_randomization', 'input_invariance']
  invariance = results[1]
  assert invariance.passed and invariance.value < 1e-5, invariance.value
  assert invariance.details['expected'] and invariance.threshold == 1e-3
  # Every float input moved (one reference std), the strings not at all.
  from tfx_explain.pipelines.penguin import trainer_module  # pylint: disable=g-import-not-at-top
  assert sorted(invariance.details['shift']) == sorted(trainer_module.FLOAT_FEATURES)


@pytest.mark.parametrize('method, invariant', [
    (IntegratedGradients(steps=32, baseline='mean'), True),
    (IntegratedGradients(steps=32, baseline='median'), True),
    (VanillaGradients(), True),
    (KernelShap(num_samples=64, background_size=10), True),
    # A fixed baseline stays where it is while the inputs move: not invariant.
    (IntegratedGradients(steps=32, baseline='zeros'), False),
    (GradientTimesInput(), False),
])
def test_input_invariance_holds_exactly_where_the_reference_moves_with_the_data(
    penguin, method, invariant):
  view, model_path = penguin
  context = CheckContext(view, None, model_path)
  check = ModelRandomizationCheck(input_invariance=True, num_examples=20)
  reference = view.reference()
  result = check.invariance_result(context.load_model(), method, reference,
                                   randomization.explained_rows(reference, 20))
  assert result.check == 'input_invariance' and result.details['expected'] == invariant
  assert result.passed == invariant, (result.value, result.message)
  if invariant:
    assert result.value < 1e-4
  else:
    assert result.value > 0.05 and 'not input invariant' in result.message
    assert 'is fixed, not a statistic of the data' in result.message


# -- TFX's penguin example, restored from tf.saved_model.save -------------------------------

@pytest.fixture(scope='module')
def tfx_penguin(tmp_path_factory):
  from tests import tfx_examples  # pylint: disable=g-import-not-at-top
  return tfx_examples.run_penguin_transform_trainer(
      str(tmp_path_factory.mktemp('tfx_penguin_randomization')), train_steps=50)


@pytest.mark.slow
def test_cascade_goes_through_a_restored_tfx_models_layers_not_its_transform(tfx_penguin):
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from tfx_explain import ReferenceStats  # pylint: disable=g-import-not-at-top
  from tfx_explain.engine.loading import load_model_function  # pylint: disable=g-import-not-at-top
  from tfx_explain.engine.restored import (RestoredModelFunction,  # pylint: disable=g-import-not-at-top
                                           restored_transform_layers)
  model = load_model_function(tfx_penguin.model_uri)
  assert isinstance(model, RestoredModelFunction) and model.transform is not None
  layers = randomization.layer_stages(model)
  # penguin_utils_keras: Dense(8) x2 then Dense(3) over the *_xf inputs; the Transform
  # layer is a layer of the model too, with no weights to re-draw.
  # Keras numbers layer names per process (dense, dense_1, ... or dense_41, dense_42, ...):
  # three Dense layers, the last built (highest number) first.
  names = [name for name, _ in layers]
  numbers = [int(n.rsplit('_', 1)[1]) if '_' in n else 0 for n in names]
  assert len(names) == 3 and all(n.startswith('dense') for n in names)
  assert numbers == sorted(numbers, reverse=True)
  transform_variables = {id(v) for layer in restored_transform_layers(model.loaded).values()
                         for v in getattr(layer, 'variables', [])}
  assert not transform_variables & {id(v) for _, variables in layers for v in variables}
  frame = pd.read_csv(os.path.join(tfx_penguin.data_root, 'penguins_processed.csv'))
  features = {n: frame[n].values.astype(np.float32) for n in model.input_names}
  reference = ReferenceStats.from_features(features, model.input_dtypes, background_size=40)
  outcome = randomization.cascading_randomization(
      model, lambda: load_model_function(tfx_penguin.model_uri), IntegratedGradients(steps=32),
      reference, randomization.explained_rows(reference, 30))
  assert outcome.self_similarity == 1.0 and outcome.self_consistent
  assert [s.layers for s in outcome.stages] == [names[:1], names[:2], names]
  assert all(s.changed and s.similarity < 0.9 for s in outcome.stages), outcome.stages
  result = ModelRandomizationCheck(max_correlation=0.9).result(outcome)
  assert result.passed and result.examples == 30


# -- small in-memory models ---------------------------------------------------------------------

def _image_model():
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tfx_explain.engine.image_model import ImageModel  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(3)
  inputs = tf_keras.Input(shape=(8, 8, 1), name='image')
  x = tf_keras.layers.Conv2D(4, 3, activation='relu', name='conv')(inputs)
  x = tf_keras.layers.Flatten()(x)
  outputs = tf_keras.layers.Dense(3, name='logits')(x)
  keras_model = tf_keras.Model(inputs, outputs)

  def copy():
    clone = tf_keras.models.clone_model(keras_model)
    clone.set_weights(keras_model.get_weights())
    return ImageModel(clone)

  return ImageModel(keras_model), copy


def test_image_maps_are_compared_flattened_and_decide():
  from tfx_explain import ImageIntegratedGradients  # pylint: disable=g-import-not-at-top
  model, copy = _image_model()
  images = np.random.default_rng(0).uniform(0, 1, (6, 8, 8, 1)).astype(np.float32)
  outcome = randomization.cascading_randomization(
      model, copy, ImageIntegratedGradients(steps=16), None, {'image': images}, seed=1)
  assert outcome.self_map_similarity == 1.0 and outcome.self_similarity == 1.0
  assert [s.layer for s in outcome.stages] == ['logits', 'conv']
  assert all(s.map_similarity is not None and s.map_similarity < 0.5 for s in outcome.stages)
  result = ModelRandomizationCheck(max_correlation=0.5).result(outcome)
  assert result.passed and result.value == max(s.map_similarity for s in outcome.stages)
  assert 'self_map_similarity' in result.details and '|map|' in result.message


def test_irreproducible_attributions_fail_whatever_the_stages_score():
  """If the real model attributed twice disagrees, a low similarity proves nothing."""
  outcome = randomization.Randomization(
      self_similarity=0.7, self_map_similarity=None,
      stages=[randomization.Stage('head', ['head'], 0.1, True)], examples=10,
      layers_with_weights=1)
  result = ModelRandomizationCheck(max_correlation=0.5).result(outcome)
  assert not result.passed and 'not reproducible' in result.message
  assert result.value == 0.1 and result.details['self_similarity'] == 0.7


def test_similarity_ranks_magnitudes_and_skips_rows_with_nothing_to_rank():
  real = np.array([[1.0, -3.0, 2.0, np.nan], [0.0, 0.0, 0.0, np.nan]])
  same_ranks = np.array([[-10.0, 30.0, 20.0, np.nan], [5.0, 1.0, 2.0, np.nan]])
  assert randomization.similarity(real, same_ranks) == 1.0   # row 2 cannot be ranked
  assert randomization.similarity(real, real[:, ::-1].copy()) < 1.0
  assert list(randomization.rankable_rows(real[:, :3])) == [True, False]


# -- config -----------------------------------------------------------------------------------

def test_config_round_trip_and_backwards_compatible_parameters():
  old = ModelRandomizationCheck('integrated_gradients', 0.9, 50, 4)   # positional, as before
  assert (old.cascading, old.max_stages, old.input_invariance) == (True, None, False)
  new = ModelRandomizationCheck(max_correlation=0.8, seed=2, cascading=False, max_stages=2,
                                input_invariance=True, max_invariance_error=1e-2)
  config = ValidationConfig(checks=[old, new])
  assert ValidationConfig.from_json(config.to_json()) == config
  # An older config (no cascading keys) still loads, with the new defaults.
  loaded = ValidationConfig.from_json(
      '{"checks": [{"check": "model_randomization", "method": "integrated_gradients", '
      '"max_correlation": 0.9, "num_examples": 20, "seed": 0}]}')
  assert loaded.checks[0].cascading and loaded.checks[0].num_examples == 20


@pytest.mark.parametrize('options, message', [
    ({'num_examples': 1}, 'num_examples must be an integer >= 2'),
    ({'max_correlation': 1.0}, r'max_correlation must be in \[-1.0, 1.0\)'),
    ({'max_correlation': 'high'}, 'max_correlation must be a number'),
    ({'max_stages': 0}, 'max_stages must be an integer >= 1'),
    ({'seed': -1}, 'seed must be an integer >= 0'),
    ({'cascading': 'yes'}, 'cascading must be true or false'),
    ({'input_invariance': 1}, 'input_invariance must be true or false'),
    ({'max_invariance_error': -0.1}, r'max_invariance_error must be in \[0.0, 1.0\]'),
    ({'method': ''}, 'method must be a method name'),
])
def test_config_errors_name_the_parameter(options, message):
  with pytest.raises(ConfigError, match='ModelRandomizationCheck: ' + message):
    ModelRandomizationCheck(**options)


def test_unknown_option_in_json_is_named():
  with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['stages'\] for "
                                        'ModelRandomizationCheck'):
    ValidationConfig.from_json('{"checks": [{"check": "model_randomization", "stages": 2}]}')


def test_validate_needs_the_model_and_the_method(tmp_path):
  importance = {'integrated_gradients': {'age': 0.5, 'income': 0.3, 'sex': 0.05, 'zip': 0.15}}
  view = AttributionsView(attributions_fixture.write_attributions(
      str(tmp_path / 'a'), importance, 0.01, 0, ['age', 'income', 'sex', 'zip'],
      ('Overall',)), 'eval')
  with pytest.raises(ConfigError, match='needs the model'):
    ModelRandomizationCheck().validate(CheckContext(view))
  with pytest.raises(ConfigError, match="method 'kernel_shap' is not in the attributions"):
    ModelRandomizationCheck(method='kernel_shap').validate(CheckContext(view, None, 'm'))


def test_a_restored_model_with_two_heads_cascades_through_the_explained_head(tmp_path):
  """The other head's weights do not reach the explained output: re-drawing them is no stage."""
  from tfx_explain.engine.loading import load_model_function  # pylint: disable=g-import-not-at-top
  from tests import test_restored_models as restored  # pylint: disable=g-import-not-at-top
  path = restored._save(restored._linear_model(0, heads={'species': (3, 'softmax'),  # pylint: disable=protected-access
                                                          'mass': (1, None)}),
                        str(tmp_path / 'm'))
  for head, other in (('species', 'mass'), ('mass', 'species')):
    layers = randomization.layer_stages(load_model_function(path, output_key=head))
    assert [name for name, _ in layers] == [head]
    assert all(v.name.startswith(f'{head}/') for v in layers[0][1]), other
