"""Models saved with tf.saved_model.save, as TFX's trainer modules save them.

Each model is linear in its (possibly transformed) inputs, so Integrated
Gradients has a closed form to check against: w_i * (x_i - b_i), and through a
z-score transform w_i / s_i * (x_i - b_i).
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfx_explain import IntegratedGradients, KernelShap
from tfx_explain.engine import serving_check
from tfx_explain.engine.loading import load_model_function
from tfx_explain.engine.model import ModelAccessError
from tfx_explain.engine.restored import RestoredModelFunction

FEATURES = ['a', 'b']
X = {'a': np.array([1.0, -2.0, 0.5], np.float32), 'b': np.array([3.0, 0.25, -1.0], np.float32)}
MEAN = {'a': 0.5, 'b': -1.0}
STD = {'a': 2.0, 'b': 4.0}


def _linear_model(units, activation=None, names=FEATURES, heads=None):
  inputs = [tf_keras.Input(shape=(1,), name=n) for n in names]
  joined = tf_keras.layers.concatenate(inputs)
  if heads:
    outputs = {h: tf_keras.layers.Dense(u, activation=a, name=h)(joined)
               for h, (u, a) in heads.items()}
  else:
    outputs = tf_keras.layers.Dense(units, activation=activation, name='head')(joined)
  model = tf_keras.Model(inputs=inputs, outputs=outputs)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if layer.weights:
      layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.weights])
  return model


def _parse(serialized, names):
  spec = {n: tf.io.FixedLenFeature([1], tf.float32) for n in names}
  return tf.io.parse_example(serialized, spec)


def _save(model, path, transform=None, hidden_transform=None, output_name='outputs',
          raw_names=None):
  """tf.saved_model.save with a serving_default over serialized tf.Examples.

  transform: attached as model.tft_layer (as TFX's examples do) and applied by serving.
  hidden_transform: applied by serving only, with raw and model input names the same.
  """
  raw_names = raw_names or [t.name.split(':')[0] for t in model.inputs]
  if transform is not None:
    model.tft_layer = transform
    raw_names = list(transform.raw_names)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    features = _parse(serialized, raw_names)
    if transform is not None:
      features = model.tft_layer(features)
    if hidden_transform is not None:
      features = hidden_transform(features)
    outputs = model(features)
    return outputs if isinstance(outputs, dict) else {output_name: outputs}

  tf.saved_model.save(model, path, signatures={'serving_default': serve})
  return path


class ZScore(tf.Module):
  """A stand-in for a TFT layer: raw `a`, `b` -> `a_xf`, `b_xf` z-scored."""

  raw_names = FEATURES

  @tf.function(input_signature=[{n: tf.TensorSpec([None, 1], tf.float32, name=n)
                                 for n in FEATURES}])
  def __call__(self, features):
    return {f'{n}_xf': (features[n] - MEAN[n]) / STD[n] for n in FEATURES}


def z_score(features):
  return {n: (features[n] - MEAN[n]) / STD[n] for n in FEATURES}


def _examples(features):
  records = []
  for i in range(len(next(iter(features.values())))):
    feature = {n: tf.train.Feature(float_list=tf.train.FloatList(value=[float(v[i])]))
               for n, v in features.items()}
    records.append(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
  return records


def _kernel(model, head=None):
  layer = model.get_layer(head or 'head')
  return layer.get_weights()[0]


def _ig(model, baseline=None):
  baseline = baseline or {'a': 0.0, 'b': 0.0}
  return IntegratedGradients(steps=8, baseline=baseline).attribute(model, X)


def test_logits_model_saved_with_tf_saved_model_save(tmp_path):
  keras_model = _linear_model(3)
  path = _save(keras_model, str(tmp_path / 'm'))
  assert not os.path.exists(os.path.join(path, 'keras_metadata.pb'))
  model = load_model_function(path)
  assert isinstance(model, RestoredModelFunction)
  assert model.input_names == FEATURES and model.num_outputs == 3
  assert model.output_kind == 'logit'
  inputs = [X[n].reshape(-1, 1) for n in FEATURES]
  np.testing.assert_allclose(model.predict(X), keras_model(inputs).numpy(), rtol=1e-6)
  result = _ig(model)
  kernel = _kernel(keras_model)
  expected = np.stack([X['a'], X['b']], 1) * kernel[:, result.target].T
  np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)


def test_sigmoid_binary_model_is_recorded_as_probability(tmp_path):
  model = load_model_function(_save(_linear_model(1, 'sigmoid'), str(tmp_path / 'm')))
  assert model.output_kind == 'probability' and model.num_outputs == 1


def test_regressor_is_recorded_as_regression_with_exact_attributions(tmp_path):
  keras_model = _linear_model(1)
  model = load_model_function(_save(keras_model, str(tmp_path / 'm')))
  assert model.output_kind == 'regression'
  result = _ig(model, baseline={'a': 1.0, 'b': -1.0})
  kernel = _kernel(keras_model)[:, 0]
  expected = np.stack([X['a'] - 1.0, X['b'] + 1.0], 1) * kernel
  np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(result.completeness_error, 0.0, atol=1e-5)


def test_two_heads_need_output_key_and_it_picks_one(tmp_path):
  keras_model = _linear_model(0, heads={'species': (3, 'softmax'), 'mass': (1, None)})
  path = _save(keras_model, str(tmp_path / 'm'))
  with pytest.raises(ModelAccessError, match=r"2 heads \['mass', 'species'\]; set output_key"):
    load_model_function(path)
  with pytest.raises(ModelAccessError, match="'weight' is not a head"):
    load_model_function(path, output_key='weight')
  species = load_model_function(path, output_key='species')
  mass = load_model_function(path, output_key='mass')
  # The sanity check re-draws the explained head, not whichever head was built last.
  assert [name for name, _ in (species.variables_of_last_layer(),
                               mass.variables_of_last_layer())] == ['species', 'mass']
  assert (species.num_outputs, species.output_kind) == (3, 'probability')
  assert (mass.num_outputs, mass.output_kind) == (1, 'regression')
  inputs = [X[n].reshape(-1, 1) for n in FEATURES]
  np.testing.assert_allclose(mass.predict(X), keras_model(inputs)['mass'].numpy(), rtol=1e-6)
  result = _ig(mass)
  expected = np.stack([X['a'], X['b']], 1) * _kernel(keras_model, 'mass')[:, 0]
  np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)


class Subclassed(tf_keras.Model):
  """A subclassed model over a dict of features."""

  def __init__(self):
    super().__init__()
    self.dense = tf_keras.layers.Dense(2, kernel_initializer='ones')

  def call(self, inputs):
    return self.dense(tf.concat([inputs['a'], 2.0 * inputs['b']], axis=1))


def test_subclassed_model_is_explained_through_its_saved_call(tmp_path):
  keras_model = Subclassed()
  keras_model({n: tf.zeros([1, 1]) for n in FEATURES})
  path = _save(keras_model, str(tmp_path / 'm'), raw_names=FEATURES)
  model = load_model_function(path)
  assert sorted(model.input_names) == FEATURES
  result = _ig(model)
  # Both outputs are a + 2b (+ bias 0): attributions a and 2b whatever the class.
  np.testing.assert_allclose(result.attributions, np.stack([X['a'], 2 * X['b']], 1), rtol=1e-5)


def test_transform_layer_in_front_gives_raw_feature_attributions(tmp_path):
  keras_model = _linear_model(1, names=['a_xf', 'b_xf'])
  path = _save(keras_model, str(tmp_path / 'm'), transform=ZScore())
  model = load_model_function(path)
  assert model.input_names == FEATURES, 'attributed to the raw features serving parses'
  served = tf.saved_model.load(path).signatures['serving_default'](
      examples=tf.constant(_examples(X)))['outputs'].numpy()
  np.testing.assert_allclose(model.predict(X), served, rtol=1e-6)
  baseline = {'a': 0.5, 'b': 1.0}
  result = _ig(model, baseline=baseline)
  kernel = _kernel(keras_model)[:, 0]
  expected = np.stack([(X[n] - baseline[n]) * kernel[i] / STD[n]
                       for i, n in enumerate(FEATURES)], 1)
  np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)
  # Model-agnostic methods perturb the raw values and go through the transform too.
  shap = KernelShap(num_samples=64, background_size=4).attribute(model, X)
  np.testing.assert_allclose(shap.attributions.sum(axis=1),
                             shap.prediction - shap.baseline_prediction, atol=1e-5)


def test_serving_check_passes_when_the_explained_function_is_the_served_one(tmp_path):
  path = _save(_linear_model(3), str(tmp_path / 'm'))
  model = load_model_function(path)
  agreement = serving_check.check_serving_agreement(model, model._loaded, path, _examples(X), X)
  assert agreement.examples == 3 and agreement.max_gap <= 1e-6
  assert agreement.output == 'outputs'


def test_a_transform_only_serving_applies_is_caught_not_explained(tmp_path):
  """The preprocessing keeps the raw names, so nothing in the model's inputs reveals it."""
  path = _save(_linear_model(3), str(tmp_path / 'm'), hidden_transform=z_score)
  model = load_model_function(path)
  assert model.input_names == FEATURES
  with pytest.raises(ModelAccessError) as caught:
    serving_check.check_serving_agreement(model, model._loaded, path, _examples(X), X)
  message = str(caught.value)
  assert 'not the one the model at' in message and path in message
  assert "'serving_default' output 'outputs'" in message and 'transform_graph' in message


# -- through AttributionGen's executor ------------------------------------------------------

def _run_attribution_gen(tmp_path, model_path, rows, config=None):
  from tfx_explain import AttributionConfig  # pylint: disable=g-import-not-at-top
  from tests import executors, penguin_fixtures  # pylint: disable=g-import-not-at-top
  examples_uri = str(tmp_path / 'examples')
  for split in ('train', 'eval'):
    penguin_fixtures.write_split(examples_uri, split, rows)
  config = config or AttributionConfig(methods=[IntegratedGradients(steps=8)], splits=['eval'],
                                       batch_size=16)
  return executors.run_attribution_gen(
      {'examples': executors.examples_artifact(examples_uri),
       'model': executors.artifact('Model', model_path)}, str(tmp_path / 'out'), config)


def _rows(n=24):
  rng = np.random.default_rng(1)
  return [{'a': float(a), 'b': float(b)} for a, b in rng.normal(size=(n, 2))]


def test_attribution_gen_refuses_a_model_whose_serving_applies_a_hidden_transform(tmp_path):
  path = _save(_linear_model(3), str(tmp_path / 'm'), hidden_transform=z_score)
  with pytest.raises(ModelAccessError, match='not the one the model at .* serves'):
    _run_attribution_gen(tmp_path, path, _rows())
  assert os.listdir(tmp_path / 'out') == [], 'nothing is published'


def test_attribution_gen_explains_a_restored_model_with_its_transform_layer(tmp_path):
  keras_model = _linear_model(1, names=['a_xf', 'b_xf'])
  path = _save(keras_model, str(tmp_path / 'm'), transform=ZScore())
  output = _run_attribution_gen(tmp_path, path, _rows())
  import tfx_explain  # pylint: disable=g-import-not-at-top
  frame = tfx_explain.load_attributions(output.uri, 'eval')
  assert sorted(c for c in frame.columns if c in ('a', 'b', 'a_xf', 'b_xf')) == FEATURES
  assert set(frame['output_kind']) == {'regression'}
  np.testing.assert_allclose(frame['completeness_error'], 0.0, atol=1e-4)


def test_transformed_inputs_without_the_transform_get_advice_about_transform_graph(tmp_path):
  """A model trained on Transform output, given raw examples and no transform_graph."""
  from tfx_explain.beam.feature_spec import InputDataError  # pylint: disable=g-import-not-at-top
  path = _save(_linear_model(1, names=['a_xf', 'b_xf']), str(tmp_path / 'm'))
  with pytest.raises(InputDataError, match=r"'a_xf' \(model input\) is missing.*transform_graph"):
    _run_attribution_gen(tmp_path, path, _rows())
  assert os.listdir(tmp_path / 'out') == []
