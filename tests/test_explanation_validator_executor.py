"""ExplanationValidator executor: blessing as Evaluator writes it, report, bad input."""

import os

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

import tfx_explain
from tfx_explain import (CompletenessCheck, FeatureShareLimit, StabilityCheck, ValidationConfig)
from tfx_explain.configurable import ConfigError
from tfx_explain.explanation_validator import executor as executor_lib
from tfx_explain.types import Attributions, ExplanationValidation
from tfx_explain.review import reports


def run_validator(tmp_path, attributions_uri, config, baseline_uri=None, blessing_in=None,
                  model_uri=None):
  def artifact(cls, uri):
    a = cls()
    a.uri = uri
    return a
  inputs = {'attributions': [artifact(Attributions, attributions_uri)]}
  if baseline_uri:
    inputs['baseline_attributions'] = [artifact(Attributions, baseline_uri)]
  if blessing_in is not None:
    upstream = artifact(standard_artifacts.ModelBlessing, str(tmp_path / 'upstream'))
    upstream.set_int_custom_property('blessed', blessing_in)
    inputs['model_blessing'] = [upstream]
  if model_uri:
    inputs['model'] = [artifact(standard_artifacts.Model, model_uri)]
  blessing = artifact(standard_artifacts.ModelBlessing, str(tmp_path / 'blessing'))
  validation = artifact(ExplanationValidation, str(tmp_path / 'validation'))
  os.makedirs(validation.uri, exist_ok=True)
  executor_lib.Executor().Do(inputs, {'blessing': [blessing], 'validation': [validation]},
                             {'config': config.to_json()})
  return blessing, validation


def test_blessed_run_writes_evaluator_style_blessing(tmp_path, penguin_run, penguin_artifacts):
  output, _ = penguin_run
  config = ValidationConfig(checks=[CompletenessCheck(max_relative_error_p95=0.5),
                                    FeatureShareLimit('sex', 0.5, ['kernel_shap'])])
  blessing, validation = run_validator(tmp_path, output.uri, config,
                                       model_uri=penguin_artifacts.model_uri)
  assert tf.io.gfile.exists(os.path.join(blessing.uri, 'BLESSED'))
  assert blessing.get_int_custom_property('blessed') == 1
  assert blessing.get_string_custom_property('current_model') == penguin_artifacts.model_uri
  report = tfx_explain.load_validation(validation.uri)
  assert report['blessed'] and all(r['passed'] for r in report['checks'])
  html = open(os.path.join(validation.uri, 'report.html')).read()
  assert 'BLESSED' in html and '<script' not in html


def test_failed_check_is_not_blessed(tmp_path, penguin_run):
  output, _ = penguin_run
  config = ValidationConfig(checks=[FeatureShareLimit('bill_length_mm', 0.05, ['kernel_shap'])])
  blessing, validation = run_validator(tmp_path, output.uri, config)
  assert tf.io.gfile.exists(os.path.join(blessing.uri, 'NOT_BLESSED'))
  assert blessing.get_int_custom_property('blessed') == 0
  assert validation.get_int_custom_property('failed_checks') >= 1
  assert 'feature_share_limit' in validation.get_string_custom_property('first_failure')


def test_upstream_not_blessed_is_anded(tmp_path, penguin_run):
  output, _ = penguin_run
  config = ValidationConfig(checks=[CompletenessCheck(max_relative_error_p95=0.5)])
  blessing, _ = run_validator(tmp_path, output.uri, config, blessing_in=0)
  assert blessing.get_int_custom_property('blessed') == 0


def test_stability_against_itself(tmp_path, penguin_run):
  output, _ = penguin_run
  config = ValidationConfig(checks=[StabilityCheck(method='kernel_shap', min_spearman=0.99)])
  blessing, validation = run_validator(tmp_path, output.uri, config, baseline_uri=output.uri)
  report = tfx_explain.load_validation(validation.uri)
  overall = [r for r in report['checks'] if r['check'] == 'stability' and r['slice'] == 'Overall']
  assert overall[0]['value'] == pytest.approx(1.0)
  assert blessing.get_int_custom_property('blessed') == 1


def test_html_escapes_data(tmp_path):
  html = reports.validation_html({
      'blessed': False, 'inputs': {'x': '<b>'},
      'checks': [{'check': 'c', 'passed': False, 'value': 1.0, 'threshold': 0.5,
                  'comparison': '<=', 'slice': 'name=<script>alert(1)</script>',
                  'method': 'm', 'feature': '"f"', 'message': '&'}]})
  assert '<script>alert' not in html and '&lt;script&gt;' in html


def test_bad_config_publishes_nothing(tmp_path, penguin_run):
  output, _ = penguin_run
  config = ValidationConfig(checks=[FeatureShareLimit('religion', 0.1)])
  with pytest.raises(ConfigError, match="'religion'"):
    run_validator(tmp_path, output.uri, config)
  assert not (tmp_path / 'blessing').exists()
  assert os.listdir(tmp_path / 'validation') == []
  with pytest.raises(ConfigError, match="Split 'test' is not in the attributions"):
    run_validator(tmp_path, output.uri, ValidationConfig(
        checks=[CompletenessCheck()], split='test'))


def test_verdicts_of_sampling_estimators_say_whether_they_hold(tmp_path, penguin_run):
  """Kernel SHAP on 32 coalitions has standard errors: a share limit placed at the
  estimate flips across estimator draws, one far from it holds; IG's are not drawn."""
  output, _ = penguin_run
  summary = tfx_explain.load_summary(output.uri)
  importance = summary.importance('kernel_shap')
  share = importance['bill_length_mm'] / sum(importance.values())
  config = ValidationConfig(checks=[
      FeatureShareLimit('bill_length_mm', round(share, 6), ['kernel_shap'], per_slice=False),
      FeatureShareLimit('bill_length_mm', 1.0, ['kernel_shap', 'integrated_gradients'],
                        per_slice=False)])
  _, validation = run_validator(tmp_path, output.uri, config)
  at_estimate, far_shap, far_ig = tfx_explain.load_validation(validation.uri)['checks']
  assert at_estimate['stability'].startswith('flips in') and \
      not at_estimate['stability'].startswith('flips in 0 ')
  assert far_shap['stability'] == 'stable over 20 estimator draws'
  assert far_ig['method'] == 'integrated_gradients' and far_ig['stability'] is None
  # Re-running gives the same statement: the draws are seeded.
  _, again = run_validator(tmp_path / 'again', output.uri, config)
  assert tfx_explain.load_validation(again.uri)['checks'][0]['stability'] == \
      at_estimate['stability']
  no_draws = ValidationConfig(checks=config.checks, estimator_draws=0)
  _, plain = run_validator(tmp_path / 'plain', output.uri, no_draws)
  assert tfx_explain.load_validation(plain.uri)['checks'][0]['stability'] is None
