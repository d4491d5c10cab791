"""TFX's own penguin example, its modules copied unmodified from the installed tfx package.

    CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer   (TFX's penguin_utils_keras)
      raw examples + transform_graph + model -> AttributionGen -> ExplanationValidator -> Pusher

The example's Trainer saves with tf.saved_model.save (no Keras metadata),
attaches `model.tft_layer`, and its model outputs logits over z-scored `*_xf`
inputs. Attributions must be named after the raw features, explain exactly
what `serving_default` computes, and gate Pusher.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import (AttributionConfig, CompletenessCheck, Distillation,
                         IntegratedGradients, KernelShap, Lime,
                         ModelRandomizationCheck, PrunedModelTrainer, PruningConfig,
                         SampledShapley, ValidationConfig)
from tests import tfx_examples

METHODS = ['integrated_gradients', 'kernel_shap', 'sampled_shapley', 'lime']


def _our_components(serving_dir, example_gen, statistics_gen, schema_gen, transform, trainer):
  """AttributionGen -> ExplanationValidator -> Pusher added after TFX's own Trainer."""
  del statistics_gen
  explained = tfx_examples.explain_validate_push(
      serving_dir, example_gen, schema_gen, transform, trainer,
      AttributionConfig(
          methods=[IntegratedGradients(steps=512, baseline='mean'),
                   KernelShap(num_samples=64, background_size=20),
                   SampledShapley(num_permutations=8), Lime(num_samples=256)],
          splits=['eval'], label_key=tfx_examples.PENGUIN_LABEL),
      ValidationConfig(checks=[
          CompletenessCheck(method='integrated_gradients', max_relative_error_p95=1e-2),
          ModelRandomizationCheck(method='integrated_gradients', max_correlation=0.9)]))
  pruned = PrunedModelTrainer(
      examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
      base_model=trainer.outputs['model'],
      config=PruningConfig(target_sparsity=0.5, fine_tune_steps=150, learning_rate=3e-3,
                           batch_size=20, label_key=tfx_examples.PENGUIN_LABEL,
                           distillation=Distillation(temperature=2.0, alpha=0.5)))
  transformed = tfx_explain.AttributionGen(
      examples=transform.outputs['transformed_examples'], model=trainer.outputs['model'],
      config=AttributionConfig(methods=[IntegratedGradients(steps=512, baseline='mean')],
                               splits=['eval'], attribution_space='transformed')
  ).with_id('TransformedAttributionGen')
  return explained + [pruned, transformed]


@pytest.fixture(scope='module')
def tfx_penguin(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfx_penguin'))
  serving_dir = os.path.join(root, 'serving_model')

  trained = tfx_examples.run_penguin_transform_trainer(
      root, train_steps=200, extra_components=lambda *base: _our_components(serving_dir, *base))
  return trained, serving_dir


def _report(trained, type_name, node, name):
  with open(os.path.join(_latest(trained, type_name, node), name)) as f:
    return json.load(f)


def _latest(trained, type_name, node):
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  return PipelineStore(trained.metadata_path).latest_uri(type_name, node)


@pytest.mark.slow
def test_modules_are_tfx_own_unmodified(tfx_penguin):
  trained, _ = tfx_penguin
  with open(trained.module_file, 'rb') as copied, \
      open(tfx_examples.tfx_example_path('penguin', 'penguin_utils_keras.py'), 'rb') as original:
    assert copied.read() == original.read()
  # What makes this example different from our own demo: no Keras metadata, a TFT layer.
  serving = os.path.join(trained.model_uri, 'Format-Serving')
  assert not os.path.exists(os.path.join(serving, 'keras_metadata.pb'))


@pytest.mark.slow
def test_attributions_are_named_after_raw_features(tfx_penguin):
  trained, _ = tfx_penguin
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  summary = tfx_explain.load_summary(uri, 'eval')
  assert sorted(summary.features) == sorted(tfx_examples.PENGUIN_FEATURES)
  frame = tfx_explain.load_attributions(uri, 'eval')
  assert sorted(set(frame['method'])) == sorted(METHODS)
  assert not [c for c in frame.columns if c.endswith('_xf')]
  # Every method attributes every raw feature (all four are floats).
  assert frame[tfx_examples.PENGUIN_FEATURES].notna().all().all()
  # The model's head is linear: logits, recorded as such.
  assert set(frame['output_kind']) == {'logit'}
  # The Transform used is recorded, so checks that reload the model use the same one.
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  store = metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(trained.metadata_path))
  [artifact] = [a for a in store.get_artifacts_by_type('tfx_explain.Attributions') if a.uri == uri]
  assert artifact.custom_properties['transform_graph_uri'].string_value == \
      trained.transform_graph_uri


@pytest.mark.slow
def test_explained_outputs_equal_serving_default(tfx_penguin):
  trained, _ = tfx_penguin
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  frame = tfx_explain.load_attributions(uri, 'eval')
  records = tfx_examples.serialized_examples(trained.examples_uri, 'eval')
  loaded = tf.saved_model.load(os.path.join(trained.model_uri, 'Format-Serving'))
  served = loaded.signatures['serving_default'](examples=tf.constant(records))['outputs'].numpy()
  for method in METHODS:
    rows = frame[frame['method'] == method].sort_values('example_index')
    assert list(rows['example_index']) == list(range(len(records)))
    index = rows['example_index'].to_numpy()
    target = rows['target'].to_numpy()
    np.testing.assert_allclose(rows['prediction'].to_numpy(), served[index, target],
                               rtol=1e-5, atol=1e-5)
    # 'predicted' explains the class serving ranks first, for every example.
    np.testing.assert_array_equal(target, np.argmax(served[index], axis=1))


@pytest.mark.slow
def test_integrated_gradients_complete_through_the_transform(tfx_penguin):
  trained, _ = tfx_penguin
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  frame = tfx_explain.load_attributions(uri, 'eval')
  ig = frame[frame['method'] == 'integrated_gradients']
  total = ig[tfx_examples.PENGUIN_FEATURES].sum(axis=1).to_numpy()
  gap = (ig['prediction'] - ig['baseline_prediction']).to_numpy()
  relative = np.abs(total - gap) / np.maximum(np.abs(gap), 1e-6)
  assert np.percentile(relative, 95) <= 1e-2
  # Kernel SHAP is efficient by construction: its sums equal the gap too.
  ks = frame[frame['method'] == 'kernel_shap']
  np.testing.assert_allclose(ks[tfx_examples.PENGUIN_FEATURES].sum(axis=1),
                             ks['prediction'] - ks['baseline_prediction'], atol=1e-4)


@pytest.mark.slow
def test_validator_with_randomisation_check_gates_pusher(tfx_penguin):
  trained, serving_dir = tfx_penguin
  report = _report(trained, 'tfx_explain.ExplanationValidation', 'ExplanationValidator',
                   'validation.json')
  by_check = {c['check']: c for c in report['checks']}
  randomisation = by_check['model_randomization']
  assert randomisation['passed'] and randomisation['value'] < 0.9
  assert by_check['completeness']['passed']
  blessing_uri = _latest(trained, 'ModelBlessing', 'ExplanationValidator')
  assert os.path.exists(os.path.join(blessing_uri, 'BLESSED'))
  pushed = tf.io.gfile.glob(os.path.join(serving_dir, '*', 'saved_model.pb'))
  assert len(pushed) == 1


@pytest.mark.slow
def test_pruned_model_serves_raw_examples_with_every_signature(tfx_penguin):
  trained, _ = tfx_penguin
  pruned_uri = _latest(trained, 'Model', 'PrunedModelTrainer')
  report = _report(trained, 'Model', 'PrunedModelTrainer', 'pruning_report.json')
  assert report['task'] == 'multiclass_logit'
  assert report['pruning_method'] == 'saved_model_variables'
  assert abs(report['achieved_sparsity'] - 0.5) <= 0.03
  base = tf.saved_model.load(os.path.join(trained.model_uri, 'Format-Serving'))
  pruned = tf.saved_model.load(os.path.join(pruned_uri, 'Format-Serving'))
  assert sorted(pruned.signatures) == sorted(base.signatures) == [
      'serving_default', 'transform_features']
  # The Transform layer came along: the same raw examples, the same transformed features.
  records = tf.constant(tfx_examples.serialized_examples(trained.examples_uri, 'eval'))
  base_xf = base.signatures['transform_features'](examples=records)
  pruned_xf = pruned.signatures['transform_features'](examples=records)
  for name, values in base_xf.items():
    np.testing.assert_array_equal(pruned_xf[name].numpy(), values.numpy())
  # Quality measured on what serving_default returns: accuracy within 0.05 of the base.
  labels = tf.io.parse_example(records, {'species': tf.io.FixedLenFeature([], tf.int64)})
  labels = labels['species'].numpy()
  outputs = pruned.signatures['serving_default'](examples=records)['outputs'].numpy()
  accuracy = float(np.mean(np.argmax(outputs, axis=1) == labels))
  assert accuracy == pytest.approx(report['pruned']['eval_accuracy'])
  assert report['pruned']['eval_accuracy'] >= report['base']['eval_accuracy'] - 0.05
  # The kernels that serve are the pruned ones.
  kernels = [v.numpy() for v in pruned.variables if v.shape.rank == 2]
  zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
  assert abs(zeros - 0.5) <= 0.03


@pytest.mark.slow
def test_raw_and_transformed_spaces_agree_for_a_z_score(tfx_penguin):
  """IG does not depend on an affine change of units when the baselines correspond:
  the raw train mean is 0 after Transform's z-score, computed over the same split."""
  trained, _ = tfx_penguin
  raw = tfx_explain.load_attributions(_latest(trained, 'tfx_explain.Attributions',
                                              'AttributionGen'), 'eval')
  transformed = tfx_explain.load_attributions(
      _latest(trained, 'tfx_explain.Attributions', 'TransformedAttributionGen'), 'eval')
  raw = raw[raw['method'] == 'integrated_gradients'].sort_values('example_index')
  transformed = transformed.sort_values('example_index')
  assert sorted(c for c in transformed.columns if c.endswith('_xf')) == sorted(
      f'{name}_xf' for name in tfx_examples.PENGUIN_FEATURES)
  for name in tfx_examples.PENGUIN_FEATURES:
    np.testing.assert_allclose(transformed[f'{name}_xf'].to_numpy(), raw[name].to_numpy(),
                               rtol=1e-3, atol=1e-4)
