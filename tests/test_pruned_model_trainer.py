"""PrunedModelTrainer executor on real artifacts: sparsity, signature, size, distillation, bad input."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from tfx_explain import Distillation, PruningConfig
from tfx_explain.configurable import ConfigError
from tfx_explain.pruned_model_trainer import executor as executor_lib
from tests import penguin_fixtures


def run_pruning(artifacts, root, config, base_model_uri=None):
  model = standard_artifacts.Model()
  model.uri = os.path.join(root, 'model')
  model_run = standard_artifacts.ModelRun()
  model_run.uri = os.path.join(root, 'model_run')
  os.makedirs(model.uri)
  os.makedirs(model_run.uri)
  inputs = {'examples': [artifacts.examples()], 'schema': [artifacts.schema()],
            'base_model': [artifacts.model(base_model_uri)]}
  executor_lib.Executor().Do(inputs, {'model': [model], 'model_run': [model_run]},
                             {'config': config.to_json()})
  return model, model_run


@pytest.fixture(scope='module')
def pruned(penguin_artifacts, tmp_path_factory):
  root = str(tmp_path_factory.mktemp('pruned'))
  config = PruningConfig(target_sparsity=0.8, schedule='polynomial', fine_tune_steps=120,
                         label_key='species', learning_rate=3e-3)
  return run_pruning(penguin_artifacts, root, config)


def test_sparsity_on_exported_weights_is_the_target(pruned):
  import tf_keras
  model, _ = pruned
  assert abs(model.get_float_custom_property('achieved_sparsity') - 0.8) <= 0.02
  exported = tf_keras.models.load_model(os.path.join(model.uri, 'Format-Serving'), compile=False)
  kernels = [w.numpy() for w in exported.weights if 'kernel' in w.name]
  zeros = sum(int((k == 0).sum()) for k in kernels)
  assert abs(zeros / sum(k.size for k in kernels) - 0.8) <= 0.02
  assert model.get_int_custom_property('nonzero_parameters') < \
      model.get_int_custom_property('total_parameters')


def test_serving_signature_takes_the_same_examples(pruned, penguin_artifacts):
  model, _ = pruned
  base = tf.saved_model.load(os.path.join(penguin_artifacts.model_uri, 'Format-Serving'))
  candidate = tf.saved_model.load(os.path.join(model.uri, 'Format-Serving'))
  rows = penguin_fixtures.rows_of(penguin_artifacts.splits['eval'][:8])
  serialized = tf.constant([penguin_fixtures.to_example(r) for r in rows])
  base_sig = base.signatures['serving_default']
  sig = candidate.signatures['serving_default']
  assert base_sig.structured_input_signature == sig.structured_input_signature
  [key] = list(base_sig.structured_outputs)
  out = sig(serialized)[key].numpy()
  assert out.shape == (8, 3)
  np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_gzip_size_shrinks_and_report_is_written(pruned):
  model, model_run = pruned
  assert model.get_int_custom_property('pruned_gzip_bytes') < \
      model.get_int_custom_property('base_gzip_bytes')
  report = json.load(open(os.path.join(model_run.uri, 'pruning_report.json')))
  assert report['pruned']['eval_accuracy'] > 0.5
  assert report['fine_tune_steps'] == 120
  # TensorBoard logs: loss and sparsity summaries.
  event_files = tf.io.gfile.glob(os.path.join(model_run.uri, '**', 'events.out.tfevents.*'))
  assert event_files


def served_accuracy(model_dir, frame):
  """Accuracy of a Format-Serving model's serving signature on the rows of frame."""
  signature = tf.saved_model.load(os.path.join(model_dir, 'Format-Serving')).signatures[
      'serving_default']
  serialized = tf.constant([penguin_fixtures.to_example(r) for r in penguin_fixtures.rows_of(frame)])
  [key] = list(signature.structured_outputs)
  probabilities = signature(serialized)[key].numpy()
  return float(np.mean(np.argmax(probabilities, axis=1) == frame['species'].to_numpy()))


def test_report_accuracies_are_the_served_models_on_the_eval_split(pruned, penguin_artifacts):
  model, model_run = pruned
  report = json.load(open(os.path.join(model_run.uri, 'pruning_report.json')))
  evaluation = penguin_artifacts.splits['eval']
  base = served_accuracy(penguin_artifacts.model_uri, evaluation)
  candidate = served_accuracy(model.uri, evaluation)
  assert report['base']['eval_accuracy'] == pytest.approx(base)
  assert report['pruned']['eval_accuracy'] == pytest.approx(candidate)
  assert report['accuracy_delta'] == pytest.approx(candidate - base)
  assert model.get_float_custom_property('accuracy_delta') == pytest.approx(candidate - base)
  assert model.get_float_custom_property('base_eval_accuracy') == pytest.approx(base)


def test_distillation_trains_and_exports(penguin_artifacts, tmp_path):
  config = PruningConfig(target_sparsity=0.5, schedule='constant', fine_tune_steps=40,
                         label_key='species', distillation=Distillation(temperature=2.0, alpha=0.5))
  model, _ = run_pruning(penguin_artifacts, str(tmp_path), config)
  assert model.get_int_custom_property('distilled') == 1
  assert abs(model.get_float_custom_property('achieved_sparsity') - 0.5) <= 0.02
  assert tf.io.gfile.exists(os.path.join(model.uri, 'Format-Serving', 'saved_model.pb'))


def test_base_model_that_is_not_keras(penguin_artifacts, tmp_path):
  module = tf.Module()
  module.f = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([None], tf.float32)])
  path = tmp_path / 'plain' / 'Format-Serving'
  tf.saved_model.save(module, str(path), signatures={'serving_default': module.f})
  config = PruningConfig(label_key='species', fine_tune_steps=1)
  with pytest.raises(ConfigError, match='not a Keras'):
    run_pruning(penguin_artifacts, str(tmp_path / 'out'), config,
                base_model_uri=str(tmp_path / 'plain'))
  assert not os.listdir(tmp_path / 'out' / 'model')


def test_label_key_missing(penguin_artifacts, tmp_path):
  with pytest.raises(ConfigError, match="label_key 'kind' is not a feature"):
    run_pruning(penguin_artifacts, str(tmp_path), PruningConfig(label_key='kind'))
  assert not os.listdir(tmp_path / 'model')


def test_no_prunable_layers(penguin_artifacts, tmp_path):
  config = PruningConfig(label_key='species', skip_layers=['dense', 'dense_1', 'probabilities'])
  with pytest.raises(ConfigError, match='no prunable layers'):
    run_pruning(penguin_artifacts, str(tmp_path), config)


@pytest.mark.parametrize('kwargs, message', [
    ({'target_sparsity': 1.0}, r'target_sparsity must be in \[0, 1\)'),
    ({'target_sparsity': -0.1}, r'target_sparsity must be in \[0, 1\)'),
    ({'schedule': 'cubic'}, 'schedule must be one of'),
    ({'fine_tune_steps': 0}, 'fine_tune_steps'),
])
def test_bad_config(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    PruningConfig(label_key='y', **kwargs)
  with pytest.raises(ConfigError, match='alpha'):
    Distillation(alpha=2.0)
