"""TFX's taxi template (`tfx template copy --model=taxi`) with our three components added.

The template's model takes Transform output: a z-scored float (trip_miles),
a bucketised float (pickup_latitude) and an integer category (trip_start_hour)
through CategoryEncoding, with a sigmoid head; its label `tips_xf` is computed
by Transform from `tips` and `fare`. Its Transform layer sits under
`tft_layer_inference`. We do what the template's TODOs ask (uncomment its
components), add AttributionGen, ExplanationValidator and PrunedModelTrainer
to its pipeline.py, gate its Pusher on our blessing, and run its own
local_runner.py on generated rows with the template's columns.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tests import tfx_examples

OUR_COMPONENTS = '''
  # Explanations gate the push; a pruned model is trained beside.
  from tfx_explain import (AttributionConfig, AttributionGen, CompletenessCheck,
                           ExplanationValidator, IntegratedGradients, KernelShap,
                           PrunedModelTrainer, PruningConfig, TopKFeatures, ValidationConfig)
  attribution_gen = AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'],
      config=AttributionConfig(methods=[IntegratedGradients(steps=64),
                                        KernelShap(num_samples=512, background_size=20)],
                               splits=['eval']))
  components.append(attribution_gen)
  explanation_validator = ExplanationValidator(
      attributions=attribution_gen.outputs['attributions'], model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      config=ValidationConfig(checks=[
          CompletenessCheck(method='integrated_gradients', max_relative_error_p95=1e-2),
          TopKFeatures(k=2, required=['trip_start_hour', 'trip_miles'], method='kernel_shap')]))
  components.append(explanation_validator)
  pruned_model_trainer = PrunedModelTrainer(
      examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
      base_model=trainer.outputs['model'],
      config=PruningConfig(target_sparsity=0.5, fine_tune_steps=200, label_key='tips_xf',
                           learning_rate=1e-3, batch_size=40))
  components.append(pruned_model_trainer)
'''


@pytest.fixture(scope='module')
def taxi(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('taxi') / 'taxi-explain')
  tfx_examples.copy_taxi_template(root)
  tfx_examples.write_taxi_rows(os.path.join(root, 'data', 'data.csv'))
  tfx_examples.add_to_taxi_pipeline(os.path.join(root, 'pipeline', 'pipeline.py'),
                                    OUR_COMPONENTS)
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  run = subprocess.run([sys.executable, 'local_runner.py'], cwd=root, env=env,
                       capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-4000:]
  return os.path.join(root, 'tfx_pipeline_output', 'taxi-explain')


def _latest(output, node, key):
  return sorted(glob.glob(os.path.join(output, node, key, '*')),
                key=lambda p: int(os.path.basename(p)))[-1]


@pytest.mark.slow
def test_template_modules_are_tfx_own(taxi):
  root = os.path.dirname(os.path.dirname(taxi))
  for module in ('models/preprocessing.py', 'models/keras_model/model.py'):
    with open(os.path.join(root, module)) as copied:
      text = copied.read()
    original = os.path.join(os.path.dirname(tfx_examples.tfx_example_path()),
                            'experimental', 'templates', 'taxi', module)
    with open(original) as f:
      # `tfx template copy` only rewrites the template's import paths.
      assert text == f.read().replace('tfx.experimental.templates.taxi.', '')


@pytest.mark.slow
def test_raw_features_through_scaling_bucket_and_category(taxi):
  uri = _latest(taxi, 'AttributionGen', 'attributions')
  frame = tfx_explain.load_attributions(uri, 'eval')
  summary = tfx_explain.load_summary(uri, 'eval')
  assert 'trip_start_hour' in summary.features and 'tips_xf' not in summary.features
  assert not [f for f in summary.features if f.endswith('_xf')]
  assert set(frame['output_kind']) == {'probability'}, 'the sigmoid behind a Reshape'
  ig = frame[frame['method'] == 'integrated_gradients']
  # No NaN: the bucketised and categorical inputs are stepped, the float one integrated.
  assert ig[summary.features].notna().all().all()
  assert summary.methods['integrated_gradients'].skipped_features == []
  assert np.percentile(ig['relative_completeness_error'], 95) <= 1e-2
  importance = ig[summary.features].abs().mean()
  assert set(importance.nlargest(2).index) == {'trip_start_hour', 'trip_miles'}
  # Raw features the model never reads get nothing but float32 rounding (the same row
  # evaluated at another position of a batch), nine orders below the top features.
  assert importance[['company', 'payment_type', 'trip_start_month']].max() <= 1e-9
  assert importance.nlargest(2).min() > 1e-3


@pytest.mark.slow
def test_our_blessing_gates_the_template_pusher(taxi):
  validation = _latest(taxi, 'ExplanationValidator', 'validation')
  with open(os.path.join(validation, 'validation.json')) as f:
    report = json.load(f)
  assert report['blessed'], report['checks']
  assert {c['check'] for c in report['checks']} >= {'completeness', 'top_k_features',
                                                    'model_blessing'}
  assert glob.glob(os.path.join(taxi, 'serving_model', '*', 'saved_model.pb'))


@pytest.mark.slow
def test_pruned_model_learns_the_transform_computed_label(taxi):
  pruned = _latest(taxi, 'PrunedModelTrainer', 'model')
  with open(os.path.join(pruned, 'pruning_report.json')) as f:
    report = json.load(f)
  assert report['task'] == 'binary_probability'
  assert abs(report['achieved_sparsity'] - 0.5) <= 0.03
  # The planted rule is learnable: well above the majority class (about 0.6).
  assert report['base']['eval_accuracy'] >= 0.8
  assert report['pruned']['eval_accuracy'] >= report['base']['eval_accuracy'] - 0.05
  model = tf.saved_model.load(os.path.join(pruned, 'Format-Serving'))
  assert sorted(model.signatures) == ['serving_default', 'transform_features']
