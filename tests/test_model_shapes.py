"""The model shapes TFX trainer modules build, each through AttributionGen and PrunedModelTrainer.

Every model is saved as TFX's examples save theirs: `tf.saved_model.save` with a
`serving_default` that parses serialized tf.Examples. Values are checked
against independent computations made through that served signature: exact
two-player Shapley values from the artifact's own background sample, and
accuracy / RMSE recomputed from what the pruned model serves.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfx_explain
from tfx_explain import (AttributionConfig, Distillation, IntegratedGradients, KernelShap,
                         PruningConfig)
from tests import executors
from tests import penguin_fixtures
from tfx_explain.artifacts import tables

FEATURES = ['a', 'b']
N_TRAIN, N_EVAL = 600, 120


def _data(n, seed):
  rng = np.random.default_rng(seed)
  return {'a': rng.normal(size=n).astype(np.float32), 'b': rng.normal(size=n).astype(np.float32)}


def _labels(shape, x):
  if shape in ('logits', 'subclassed'):
    return np.argmax(np.stack([x['a'], x['b'], -x['a'] - x['b']], 1), axis=1).astype(np.int64)
  if shape == 'sigmoid':
    return (x['a'] + x['b'] > 0).astype(np.int64)
  return (2.0 * x['a'] - x['b'] + 0.5 * x['a'] * x['b']).astype(np.float32)   # regression, heads


class DictClassifier(tf_keras.Model):
  """Subclassed: a dict of features in, logits out."""

  def __init__(self):
    super().__init__()
    self.hidden = tf_keras.layers.Dense(16, activation='relu')
    self.logits = tf_keras.layers.Dense(3)

  def call(self, inputs):
    return self.logits(self.hidden(tf.concat([inputs['a'], inputs['b']], axis=1)))


def _build(shape):
  if shape == 'subclassed':
    return DictClassifier()
  inputs = [tf_keras.Input(shape=(1,), name=n) for n in FEATURES]
  hidden = tf_keras.layers.Dense(16, activation='relu')(tf_keras.layers.concatenate(inputs))
  if shape == 'logits':
    outputs = tf_keras.layers.Dense(3)(hidden)
  elif shape == 'sigmoid':
    outputs = tf_keras.layers.Dense(1, activation='sigmoid')(hidden)
  elif shape == 'regression':
    outputs = tf_keras.layers.Dense(1)(hidden)
  else:   # two heads: a class head and the value the label is
    outputs = {'kind': tf_keras.layers.Dense(3, activation='softmax', name='kind')(hidden),
               'value': tf_keras.layers.Dense(1, name='value')(hidden)}
  return tf_keras.Model(inputs=inputs, outputs=outputs)


LOSSES = {'logits': tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
          'subclassed': tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
          'sigmoid': 'binary_crossentropy', 'regression': 'mse', 'heads': {'value': 'mse'}}


def _train_and_save(shape, path, x, y):
  tf_keras.utils.set_random_seed(3)
  model = _build(shape)
  model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss=LOSSES[shape])
  if shape == 'subclassed':
    inputs = {n: x[n].reshape(-1, 1) for n in FEATURES}
  else:
    inputs = [x[n].reshape(-1, 1) for n in FEATURES]
  targets = {'value': y} if shape == 'heads' else y
  model.fit(inputs, targets, epochs=30, batch_size=32, verbose=0)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    parsed = tf.io.parse_example(serialized, {n: tf.io.FixedLenFeature([1], tf.float32)
                                              for n in FEATURES})
    outputs = model(parsed)
    return outputs if isinstance(outputs, dict) else {'outputs': outputs}

  tf.saved_model.save(model, os.path.join(path, 'Format-Serving'),
                      signatures={'serving_default': serve})
  return path


def _schema(label_type):
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema()
  for name, kind in [('a', schema_pb2.FLOAT), ('b', schema_pb2.FLOAT), ('label', label_type)]:
    feature = schema.feature.add(name=name, type=kind)
    feature.shape.dim.add(size=1)
    feature.presence.min_fraction = 1.0
  return schema


SHAPES = {
    # shape: (output_key, recorded output kind, pruning task)
    'logits': (None, 'logit', 'multiclass_logit'),
    'sigmoid': (None, 'probability', 'binary_probability'),
    'regression': (None, 'regression', 'regression'),
    'heads': ('value', 'regression', 'regression'),
    'subclassed': (None, 'logit', 'multiclass_logit'),
}


@pytest.fixture(scope='module', params=sorted(SHAPES))
def shaped(request, tmp_path_factory):
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  shape = request.param
  root = str(tmp_path_factory.mktemp(shape))
  train, evaluation = _data(N_TRAIN, 0), _data(N_EVAL, 1)
  y_train, y_eval = _labels(shape, train), _labels(shape, evaluation)
  examples_uri = os.path.join(root, 'examples')
  for split, x, y in (('train', train, y_train), ('eval', evaluation, y_eval)):
    rows = [{'a': float(x['a'][i]), 'b': float(x['b'][i]),
             'label': (int(y[i]) if y.dtype.kind == 'i' else float(y[i]))}
            for i in range(len(y))]
    penguin_fixtures.write_split(examples_uri, split, rows)
  schema_dir = os.path.join(root, 'schema')
  os.makedirs(schema_dir)
  label_type = schema_pb2.INT if y_train.dtype.kind == 'i' else schema_pb2.FLOAT
  with open(os.path.join(schema_dir, 'schema.pbtxt'), 'w') as f:
    f.write(text_format.MessageToString(_schema(label_type)))
  model_uri = _train_and_save(shape, os.path.join(root, 'model'), train, y_train)
  return (shape, root, executors.examples_artifact(examples_uri),
          executors.artifact('Model', model_uri), executors.artifact('Schema', schema_dir))


def _serve(model_uri, records, key):
  loaded = tf.saved_model.load(os.path.join(model_uri, 'Format-Serving'))
  outputs = loaded.signatures['serving_default'](examples=tf.constant(records))
  return outputs[key or 'outputs'].numpy().reshape(len(records), -1)


def _records(examples_uri, split):
  from tests import tfx_examples  # pylint: disable=g-import-not-at-top
  return tfx_examples.serialized_examples(examples_uri, split)


def _example(values):
  feature = {n: tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
             for n, v in values.items()}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.slow
def test_attribution_gen_on_each_shape(shaped):
  shape, root, examples, model, schema = shaped
  output_key, kind, _ = SHAPES[shape]
  config = AttributionConfig(
      methods=[IntegratedGradients(steps=64, baseline='mean'),
               KernelShap(num_samples=16, background_size=8)],
      splits=['eval'], output_key=output_key, batch_size=64)
  output = executors.run_attribution_gen(
      {'examples': examples, 'model': model, 'schema': schema},
      os.path.join(root, 'attributions'), config)
  frame = tfx_explain.load_attributions(output.uri, 'eval')
  assert set(frame['output_kind']) == {kind}
  records = _records(examples.uri, 'eval')
  served = _serve(model.uri, records, output_key)
  ks = frame[frame['method'] == 'kernel_shap'].sort_values('example_index')
  index, target = ks['example_index'].to_numpy(), ks['target'].to_numpy()
  np.testing.assert_allclose(ks['prediction'], served[index, target], rtol=1e-5, atol=1e-6)
  # Two players: the exact interventional Shapley values, computed through serving_default
  # over the artifact's own background sample, for the first examples.
  # Kernel SHAP's background is the first background_size rows of the reference sample.
  background = tables.load_reference(output.uri).background
  rows = 8
  for row in ks.head(5).itertuples():
    x = {'a': records_value(records[row.example_index], 'a'),
         'b': records_value(records[row.example_index], 'b')}
    grid = [_example({'a': (x['a'] if use_a else background['a'][z]),
                      'b': (x['b'] if use_b else background['b'][z])})
            for use_a in (0, 1) for use_b in (0, 1) for z in range(rows)]
    values = _serve(model.uri, grid, output_key)[:, row.target].reshape(2, 2, rows).mean(-1)
    phi_a = 0.5 * (values[1, 0] - values[0, 0]) + 0.5 * (values[1, 1] - values[0, 1])
    phi_b = 0.5 * (values[0, 1] - values[0, 0]) + 0.5 * (values[1, 1] - values[1, 0])
    np.testing.assert_allclose([row.a, row.b], [phi_a, phi_b], rtol=1e-4, atol=1e-5)
  ig = frame[frame['method'] == 'integrated_gradients']
  assert np.percentile(ig['relative_completeness_error'], 95) <= 2e-2


def records_value(record, name):
  return tf.train.Example.FromString(record).features.feature[name].float_list.value[0]


@pytest.mark.slow
def test_pruned_model_trainer_on_each_shape(shaped):
  shape, root, examples, model, schema = shaped
  output_key, _, task = SHAPES[shape]
  config = PruningConfig(target_sparsity=0.5, fine_tune_steps=100, label_key='label',
                         learning_rate=3e-3, output_key=output_key,
                         distillation=Distillation(temperature=2.0, alpha=0.5))
  pruned, _ = executors.run_pruned_model_trainer(
      {'examples': examples, 'schema': schema, 'base_model': model}, root, config)
  with open(os.path.join(pruned.uri, 'pruning_report.json')) as f:
    report = json.load(f)
  assert report['task'] == task
  assert abs(report['achieved_sparsity'] - 0.5) <= 0.03
  records = _records(examples.uri, 'eval')
  labels = np.asarray([tf.train.Example.FromString(r).features.feature['label'] for r in records])
  labels = np.asarray([f.int64_list.value[0] if f.int64_list.value else f.float_list.value[0]
                       for f in labels])
  served = {which: _serve(uri, records, output_key)
            for which, uri in (('base', model.uri), ('pruned', pruned.uri))}
  if task == 'regression':
    rmse = {w: float(np.sqrt(np.mean((o[:, 0] - labels) ** 2))) for w, o in served.items()}
    assert report['pruned']['eval_rmse'] == pytest.approx(rmse['pruned'], rel=1e-5)
    assert report['base']['eval_rmse'] == pytest.approx(rmse['base'], rel=1e-5)
    assert rmse['pruned'] <= rmse['base'] + 0.25 * np.std(labels)
  else:
    if task == 'binary_probability':
      predicted = {w: (o[:, 0] > 0.5).astype(int) for w, o in served.items()}
    else:
      predicted = {w: np.argmax(o, axis=1) for w, o in served.items()}
    accuracy = {w: float(np.mean(p == labels)) for w, p in predicted.items()}
    assert report['pruned']['eval_accuracy'] == pytest.approx(accuracy['pruned'])
    assert accuracy['base'] > 0.9, 'the base model learnt the task'
    assert accuracy['pruned'] >= accuracy['base'] - 0.05
