"""Vector inputs: one float list per example (scikit-learn's breast cancer as 30 floats under `x`).

A Sequential model on `Input(shape=(30,))`, saved with tf.saved_model.save and a
serving_default that parses `x` as FixedLenFeature([30]): each element is
attributed on its own, as `x[0]` ... `x[29]`, everywhere.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfx_explain
from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap, PruningConfig
from tfx_explain.engine.loading import load_model_function
from tests import executors
from tests import penguin_fixtures

D = 30
NAMES = [f'x[{i}]' for i in range(D)]


def _save_sequential(model, path, size=D):
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    parsed = tf.io.parse_example(serialized, {'x': tf.io.FixedLenFeature([size], tf.float32)})
    return {'outputs': model(parsed['x'])}

  tf.saved_model.save(model, os.path.join(path, 'Format-Serving'),
                      signatures={'serving_default': serve})
  return path


def test_vector_input_is_attributed_per_element_exactly(tmp_path):
  """A linear regressor on a vector: IG from zeros is w_i * x_i, element by element."""
  model = tf_keras.Sequential([tf_keras.Input(shape=(4,)), tf_keras.layers.Dense(1)])
  rng = np.random.default_rng(0)
  weights = rng.normal(size=(4, 1)).astype(np.float32)
  model.layers[-1].set_weights([weights, np.zeros(1, np.float32)])
  path = _save_sequential(model, str(tmp_path / 'm'), size=4)
  function = load_model_function(path)
  assert function.input_names == ['x[0]', 'x[1]', 'x[2]', 'x[3]'], 'named after the served feature'
  assert function.vector_inputs == {'x': 4}
  x = rng.normal(size=(5, 4)).astype(np.float32)
  # Given whole under its feature name, or element by element: the same.
  whole = IntegratedGradients(steps=4, baseline='zeros').attribute(function, {'x': x})
  split = IntegratedGradients(steps=4, baseline='zeros').attribute(
      function, {f'x[{i}]': x[:, i] for i in range(4)})
  np.testing.assert_allclose(whole.attributions, x * weights[:, 0], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(whole.attributions, split.attributions)
  assert whole.feature_names == ['x[0]', 'x[1]', 'x[2]', 'x[3]']


@pytest.fixture(scope='module')
def breast_cancer(tmp_path_factory):
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_breast_cancer  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp('breast_cancer'))
  data = load_breast_cancer()
  x = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32)
  y = data.target.astype(np.int64)
  eval_rows = np.arange(len(y)) % 4 == 0
  examples_uri = os.path.join(root, 'examples')
  for split, mask in (('train', ~eval_rows), ('eval', eval_rows)):
    penguin_fixtures.write_split(examples_uri, split, [
        {'x': [float(v) for v in x[i]], 'label': int(y[i])} for i in np.nonzero(mask)[0]])
  schema = schema_pb2.Schema()
  feature = schema.feature.add(name='x', type=schema_pb2.FLOAT)
  feature.shape.dim.add(size=D)
  feature.presence.min_fraction = 1.0
  label = schema.feature.add(name='label', type=schema_pb2.INT)
  label.shape.dim.add(size=1)
  label.presence.min_fraction = 1.0
  os.makedirs(os.path.join(root, 'schema'))
  with open(os.path.join(root, 'schema', 'schema.pbtxt'), 'w') as f:
    f.write(text_format.MessageToString(schema))
  tf_keras.utils.set_random_seed(0)
  model = tf_keras.Sequential([tf_keras.Input(shape=(D,)),
                               tf_keras.layers.Dense(16, activation='relu'),
                               tf_keras.layers.Dense(1, activation='sigmoid')])
  model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss='binary_crossentropy')
  model.fit(x[~eval_rows], y[~eval_rows], epochs=20, batch_size=32, verbose=0)
  model_uri = _save_sequential(model, os.path.join(root, 'model'))
  artifacts = {'examples': executors.examples_artifact(examples_uri),
               'model': executors.artifact('Model', model_uri),
               'schema': executors.artifact('Schema', os.path.join(root, 'schema'))}
  return root, artifacts, x[eval_rows], y[eval_rows]


@pytest.mark.slow
def test_attribution_gen_on_a_vector_feature(breast_cancer):
  root, artifacts, x_eval, _ = breast_cancer
  config = AttributionConfig(methods=[IntegratedGradients(steps=256, baseline='mean'),
                                      KernelShap(num_samples=256, background_size=10)],
                             splits=['eval'], batch_size=64)
  output = executors.run_attribution_gen(artifacts, os.path.join(root, 'attributions'), config)
  frame = tfx_explain.load_attributions(output.uri, 'eval')
  assert [c for c in frame.columns if c.startswith('x[')] == NAMES
  assert frame[NAMES].notna().all().all()
  summary = tfx_explain.load_summary(output.uri, 'eval')
  assert summary.features == NAMES
  assert set(frame['output_kind']) == {'probability'}
  ig = frame[frame['method'] == 'integrated_gradients'].sort_values('example_index')
  # The optional group total: what the elements of x add up to, per example, averaged.
  assert summary.feature_groups == {'x': NAMES}
  group = summary.method_on('integrated_gradients').feature_groups['x']
  totals = ig[NAMES].sum(axis=1)
  assert group['mean_attribution'] == pytest.approx(totals.mean(), rel=1e-9)
  assert group['mean_absolute_attribution'] == pytest.approx(totals.abs().mean(), rel=1e-9)
  assert np.percentile(ig['relative_completeness_error'], 95) <= 1e-2
  # The element values the engine saw are the examples' own: IG's sum is f(x) - f(mean),
  # with f(x) what serving returns.
  loaded = tf.saved_model.load(os.path.join(artifacts['model'].uri, 'Format-Serving'))
  served = loaded(tf.constant(x_eval), training=False).numpy()[:, 0]
  np.testing.assert_allclose(ig['prediction'], served[ig['example_index']], rtol=1e-5, atol=1e-6)
  ks = frame[frame['method'] == 'kernel_shap']
  np.testing.assert_allclose(ks[NAMES].sum(axis=1), ks['prediction'] - ks['baseline_prediction'],
                             atol=1e-4)
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  attributed = set()
  for slice_attributions in tfma.load_attributions(os.path.join(output.uri, 'Split-eval')):
    for key_and_values in slice_attributions.attributions_keys_and_values:
      attributed |= set(key_and_values.values.keys())
  assert attributed == set(NAMES)


@pytest.mark.slow
def test_pruned_model_trainer_on_a_vector_feature(breast_cancer):
  root, artifacts, x_eval, y_eval = breast_cancer
  pruned, _ = executors.run_pruned_model_trainer(
      {'examples': artifacts['examples'], 'schema': artifacts['schema'],
       'base_model': artifacts['model']}, root,
      PruningConfig(target_sparsity=0.6, fine_tune_steps=100, label_key='label',
                    learning_rate=3e-3))
  with open(os.path.join(pruned.uri, 'pruning_report.json')) as f:
    report = json.load(f)
  assert report['task'] == 'binary_probability'
  assert abs(report['achieved_sparsity'] - 0.6) <= 0.03
  loaded = tf.saved_model.load(os.path.join(pruned.uri, 'Format-Serving'))
  probabilities = loaded(tf.constant(x_eval), training=False).numpy()[:, 0]
  accuracy = float(np.mean((probabilities > 0.5) == y_eval))
  assert accuracy == pytest.approx(report['pruned']['eval_accuracy'])
  assert accuracy >= report['base']['eval_accuracy'] - 0.05
