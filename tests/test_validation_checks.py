"""Every explanation check, passing and failing, on attributions built for the purpose."""

import os

import pytest

from tfx_explain import (CompletenessCheck, FeatureShareLimit, MethodAgreementCheck,
                         ModelRandomizationCheck, SkippedRowsLimit, StabilityCheck, TopKFeatures,
                         ValidationConfig)
from tfx_explain.configurable import ConfigError
from tfx_explain.validation.context import AttributionsView, CheckContext
from tfx_explain.validation.ranking import spearman
from tests import attributions_fixture

FEATURES = ['age', 'income', 'sex', 'zip']


def make_attributions(root, name, importance, relative_p95=0.01, skipped=0,
                      features=FEATURES, slices=('Overall', 'region=north')):
  """A view of attributions whose slices hold exactly `importance` (see write_attributions)."""
  uri = attributions_fixture.write_attributions(os.path.join(str(root), name), importance,
                                                relative_p95, skipped, features, slices)
  return AttributionsView(uri, 'eval')


IMPORTANCE = {'integrated_gradients': {'age': 0.5, 'income': 0.3, 'sex': 0.05, 'zip': 0.15},
              'kernel_shap': {'age': 0.45, 'income': 0.35, 'sex': 0.04, 'zip': 0.16}}


def run(check, current, baseline=None, model_path=None):
  context = CheckContext(current, baseline, model_path)
  check.validate(context)
  return check.run(context)


def test_completeness(tmp_path):
  good = make_attributions(tmp_path, 'good', IMPORTANCE, relative_p95=0.02)
  bad = make_attributions(tmp_path, 'bad', IMPORTANCE, relative_p95=0.3)
  results = run(CompletenessCheck(max_relative_error_p95=0.05), good)
  assert len(results) == 2 and all(r.passed for r in results)
  results = run(CompletenessCheck(max_relative_error_p95=0.05), bad)
  assert not any(r.passed for r in results) and results[0].value == 0.3


def test_feature_share_limit(tmp_path):
  view = make_attributions(tmp_path, 'a', IMPORTANCE)
  passing = run(FeatureShareLimit('sex', max_share=0.1), view)
  assert all(r.passed for r in passing) and len(passing) == 4   # 2 methods x 2 slices
  assert passing[0].value == pytest.approx(0.05)
  failing = run(FeatureShareLimit('age', max_share=0.3, methods=['kernel_shap']), view)
  assert not any(r.passed for r in failing) and failing[0].value == pytest.approx(0.45)


def test_feature_share_per_slice_catches_a_slice(tmp_path):
  per_slice = {'kernel_shap': {'Overall': {'age': 0.5, 'income': 0.4, 'sex': 0.1, 'zip': 0.0},
                               'region=north': {'age': 0.2, 'income': 0.2, 'sex': 0.6,
                                                'zip': 0.0}}}
  view = make_attributions(tmp_path, 'a', per_slice)
  results = {r.slice: r.passed for r in run(FeatureShareLimit('sex', max_share=0.2), view)}
  assert results == {'Overall': True, 'region=north': False}


def test_top_k_features(tmp_path):
  view = make_attributions(tmp_path, 'a', IMPORTANCE)
  assert all(r.passed for r in run(TopKFeatures(k=2, required=['age'], forbidden=['sex']), view))
  results = run(TopKFeatures(k=1, required=['income'], method='integrated_gradients'), view)
  assert [r.passed for r in results] == [False]


def test_stability_against_baseline(tmp_path):
  current = make_attributions(tmp_path, 'now', IMPORTANCE)
  similar = make_attributions(tmp_path, 'similar', IMPORTANCE)
  flipped = make_attributions(tmp_path, 'flipped', {
      'integrated_gradients': {'age': 0.05, 'income': 0.15, 'sex': 0.5, 'zip': 0.3}})
  check = StabilityCheck(method='integrated_gradients', min_spearman=0.8, top_k=2,
                         min_top_k_overlap=0.5)
  assert all(r.passed for r in run(check, current, similar))
  results = run(check, current, flipped)
  assert not any(r.passed for r in results)
  assert {r.check for r in results} == {'stability', 'stability_top_k_overlap'}


def test_stability_without_baseline_passes_and_says_why(tmp_path):
  current = make_attributions(tmp_path, 'now', IMPORTANCE)
  [result] = run(StabilityCheck(method='kernel_shap'), current, None)
  assert result.passed and 'no baseline' in result.message


def test_stability_refuses_a_different_feature_set(tmp_path):
  current = make_attributions(tmp_path, 'now', IMPORTANCE)
  other = make_attributions(tmp_path, 'other', {'kernel_shap': {'age': 1.0, 'height': 0.5}},
                            features=['age', 'height'])
  with pytest.raises(ConfigError, match='same feature set'):
    run(StabilityCheck(method='kernel_shap'), current, other)


def test_method_agreement(tmp_path):
  view = make_attributions(tmp_path, 'a', IMPORTANCE)
  [result] = run(MethodAgreementCheck('integrated_gradients', 'kernel_shap', 0.9), view)
  assert result.passed and result.value == pytest.approx(1.0)
  disagree = make_attributions(tmp_path, 'b', {
      'integrated_gradients': IMPORTANCE['integrated_gradients'],
      'kernel_shap': {'age': 0.01, 'income': 0.02, 'sex': 0.5, 'zip': 0.3}})
  [result] = run(MethodAgreementCheck('integrated_gradients', 'kernel_shap', 0.0), disagree)
  assert not result.passed and result.value < 0


def test_skipped_rows_limit(tmp_path):
  assert run(SkippedRowsLimit(0.05), make_attributions(tmp_path, 'a', IMPORTANCE, skipped=2))[0].passed
  assert not run(SkippedRowsLimit(0.0), make_attributions(tmp_path, 'b', IMPORTANCE, skipped=2))[0].passed


@pytest.mark.parametrize('check, message', [
    (FeatureShareLimit('height', 0.1), r"feature\(s\) \['height'\] are not in the attributions"),
    (CompletenessCheck(method='lime'), "method 'lime' is not in the attributions"),
    (MethodAgreementCheck('integrated_gradients', 'deep_lift'), "method_b 'deep_lift'"),
])
def test_config_naming_what_the_attributions_lack(tmp_path, check, message):
  view = make_attributions(tmp_path, 'a', IMPORTANCE)
  with pytest.raises(ConfigError, match=message):
    check.validate(CheckContext(view))


@pytest.mark.parametrize('factory, message', [
    (lambda: FeatureShareLimit('sex', max_share=1.5), r'max_share must be in \[0.0, 1.0\]'),
    (lambda: StabilityCheck(min_spearman=2.0), r'min_spearman must be in \[-1.0, 1.0\]'),
    (lambda: CompletenessCheck(max_relative_error_p95=0.0), 'max_relative_error_p95'),
    (lambda: TopKFeatures(k=0, required=['a']), 'k must be an integer'),
    (lambda: ValidationConfig(checks=[]), 'checks is empty'),
])
def test_thresholds_out_of_range(factory, message):
  with pytest.raises(ConfigError, match=message):
    factory()


def test_config_round_trip():
  config = ValidationConfig(checks=[
      CompletenessCheck(max_relative_error_p95=0.2), FeatureShareLimit('sex', 0.1, ['kernel_shap']),
      TopKFeatures(3, required=['age']), StabilityCheck(top_k=2),
      MethodAgreementCheck(min_spearman=0.3), ModelRandomizationCheck(seed=4),
      SkippedRowsLimit(0.01)], split='test')
  assert ValidationConfig.from_json(config.to_json()) == config
  with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['limit'\] for FeatureShareLimit"):
    ValidationConfig.from_json('{"checks": [{"check": "feature_share_limit", "feature": "a", '
                               '"max_share": 0.1, "limit": 2}]}')


def test_spearman_matches_definition():
  assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_stability_does_not_judge_tiny_slices(tmp_path):
  current = make_attributions(tmp_path, 'now', IMPORTANCE)
  flipped = make_attributions(tmp_path, 'flipped', {
      'integrated_gradients': {'age': 0.05, 'income': 0.15, 'sex': 0.5, 'zip': 0.3}})
  results = run(StabilityCheck(method='integrated_gradients', min_slice_examples=60),
                current, flipped)
  north = [r for r in results if r.slice == 'region=north']
  assert len(north) == 1 and north[0].passed and 'not judged' in north[0].message
  assert not [r for r in results if r.slice == 'Overall'][0].passed
