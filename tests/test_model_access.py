"""Model access: Trainer's Keras model, dense-feature signatures, and clear refusals."""

import numpy as np
import pytest
import tensorflow as tf

from tfx_explain import IntegratedGradients
from tfx_explain.engine.loading import load_model_function
from tfx_explain.engine.model import ModelAccessError

W = np.array([2.0, -1.0], np.float32)


class DenseSignatureModule(tf.Module):
  """y = 2a - b + 1, exported with a dense-feature signature and an examples one."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name='a'),
                                tf.TensorSpec([None], tf.float32, name='b')])
  def dense(self, a, b):
    return {'y': tf.expand_dims(2.0 * a - b + 1.0, -1)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(self, examples):
    parsed = tf.io.parse_example(examples, {'a': tf.io.FixedLenFeature([], tf.float32),
                                            'b': tf.io.FixedLenFeature([], tf.float32)})
    return self.dense(parsed['a'], parsed['b'])


def save(tmp_path, with_dense=True):
  module = DenseSignatureModule()
  signatures = {'serving_default': module.serve}
  if with_dense:
    signatures['dense_features'] = module.dense
  path = str(tmp_path / 'saved_model')
  tf.saved_model.save(module, path, signatures=signatures)
  return path


def test_signature_with_dense_inputs_is_differentiated(tmp_path):
  path = save(tmp_path)
  model = load_model_function(path, signature_name='dense_features')
  features = {'a': np.array([1.0, 3.0], np.float32), 'b': np.array([0.5, -2.0], np.float32)}
  result = IntegratedGradients(steps=4, baseline='zeros').attribute(model, features)
  np.testing.assert_allclose(result.attributions, np.stack([2 * features['a'], -features['b']], 1),
                             atol=1e-5)
  assert result.output_kind == 'regression'


def test_dense_signature_is_found_without_naming_it(tmp_path):
  model = load_model_function(save(tmp_path))
  assert sorted(model.input_names) == ['a', 'b']


def test_examples_only_signature_is_refused_with_what_is_needed(tmp_path):
  path = save(tmp_path, with_dense=False)
  with pytest.raises(ModelAccessError, match='dense feature inputs'):
    load_model_function(path)
  with pytest.raises(ModelAccessError, match='serialized tf.Examples and cannot be differentiated'):
    load_model_function(path, signature_name='serving_default')
  with pytest.raises(ModelAccessError, match="Signature 'nope' not found"):
    load_model_function(path, signature_name='nope')


def test_trainer_model_loads_as_keras(penguin_artifacts):
  model = load_model_function(penguin_artifacts.model_uri)
  assert sorted(model.float_features) == ['bill_depth_mm', 'bill_length_mm', 'body_mass_g',
                                          'flipper_length_mm']
  assert sorted(model.other_features) == ['island', 'sex']
  assert model.output_kind == 'probability' and model.num_outputs == 3


def test_a_shared_model_in_use_is_loaded_once(tmp_path):
  path = save(tmp_path)
  first = load_model_function(path, shared=True)
  assert load_model_function(path, shared=True) is first
  # Unshared loads (callers that change weights) always get their own copy.
  assert load_model_function(path) is not first
  assert load_model_function(path, signature_name='dense_features', shared=True) is not first
  # A SavedModel written again at the same place is a different model.
  del first
  import gc
  gc.collect()
  kept = load_model_function(path, shared=True)
  import shutil
  shutil.rmtree(path)
  save(tmp_path)
  import os
  os.utime(os.path.join(path, 'saved_model.pb'), ns=(1, 1))
  assert load_model_function(path, shared=True) is not kept
