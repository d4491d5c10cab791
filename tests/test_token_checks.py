"""Word checks (TopKTokens, TokenDriftCheck) and the per-word summary they read."""

import numpy as np
import pytest

import tfx_explain
from tfx_explain import TokenDriftCheck, TopKTokens, ValidationConfig
from tfx_explain.artifacts import layout, tables
from tfx_explain.engine.text import merge_token_totals, token_totals
from tfx_explain.configurable import ConfigError
from tfx_explain.validation.context import CheckContext


class WordView:
  """What the word checks read of an Attributions split: per-word summaries on disk."""

  def __init__(self, uri):
    self.uri = uri
    self.frame = tables.load_token_summary(uri, 'eval')
    self.slices = sorted(set(self.frame['slice']), key=lambda s: s != 'Overall')

  def token_methods(self):
    return sorted(set(self.frame['method']))

  def token_importance(self, method, slice_name='Overall', min_count=1):
    return tables.word_importance(self.frame, method, slice_name, min_count)


def _write(tmp_path, name, scored):
  """A split whose words have these (word, [scores]) in slice Overall, method token_shap."""
  split_dir = layout.split_uri(str(tmp_path / name), 'eval')
  (tmp_path / name / layout.split_dir_name('eval')).mkdir(parents=True)
  partials = [token_totals([[w] * len(s)], [s]) for w, s in scored]
  merged = merge_token_totals(partials)
  tables.write_token_summary(split_dir, [('Overall', 'token_shap', w, c, t, a)
                                         for w, (c, t, a) in merged.items()])
  return WordView(str(tmp_path / name))


def test_token_totals_merge_and_read_back_ranked(tmp_path):
  batch_a = token_totals([['good', 'film'], ['good']], [[1.0, 0.1], [3.0]])
  batch_b = token_totals([['bad']], [[-2.0]])
  assert merge_token_totals([batch_a, batch_b]) == {
      'good': [2, 4.0, 4.0], 'film': [1, 0.1, 0.1], 'bad': [1, -2.0, 2.0]}
  view = _write(tmp_path, 'a', [('good', [1.0, 3.0]), ('bad', [-1.5]), ('film', [0.1])])
  frame = tfx_explain.load_token_summary(view.uri, 'eval')
  assert list(frame['token']) == ['good', 'bad', 'film']   # by mean |score|
  np.testing.assert_allclose(frame['mean_attribution'], [2.0, -1.5, 0.1])
  assert list(frame['count']) == [2, 1, 1]


def test_missing_token_summary_says_which_methods_make_one(tmp_path):
  (tmp_path / layout.split_dir_name('eval')).mkdir()
  with pytest.raises(FileNotFoundError, match='TokenShap'):
    tfx_explain.load_token_summary(str(tmp_path), 'eval')


def test_top_k_tokens_fails_when_a_forbidden_word_moves_the_model(tmp_path):
  view = _write(tmp_path, 'a', [('awful', [-2.0] * 3), ('actor', [1.5] * 3),
                                ('the', [0.1] * 3), ('superb', [0.05] * 3), ('rare', [9.0])])
  results = TopKTokens(k=2, required=['awful', 'superb'], forbidden=['actor']).run(
      CheckContext(current=view))
  verdicts = {r.feature: r.passed for r in results}
  # 'rare' (seen once) is below min_count and does not take a place in the top 2.
  assert verdicts == {'awful': True, 'superb': False, 'actor': False}


def test_token_drift_compares_with_the_blessed_models_top_words(tmp_path):
  before = _write(tmp_path, 'before', [(w, [s] * 3) for w, s in
                                       [('awful', 3.0), ('superb', 2.0), ('dull', 1.0)]])
  same = _write(tmp_path, 'same', [(w, [s] * 3) for w, s in
                                   [('superb', 3.0), ('awful', 2.5), ('dull', 1.0)]])
  moved = _write(tmp_path, 'moved', [(w, [s] * 3) for w, s in
                                     [('actor', 3.0), ('the', 2.0), ('awful', 1.0)]])
  check = TokenDriftCheck(k=3, min_overlap=0.6)
  [kept] = check.run(CheckContext(current=same, baseline=before))
  [drifted] = check.run(CheckContext(current=moved, baseline=before))
  assert kept.passed and kept.value == 1.0
  assert not drifted.passed and drifted.value == pytest.approx(1 / 3)
  [first] = check.run(CheckContext(current=same))
  assert first.passed and 'no baseline' in first.message


def test_word_checks_need_a_token_method(tmp_path):
  class NoWords:
    def token_methods(self):
      return []
  with pytest.raises(ConfigError, match='token method'):
    TopKTokens(k=3, required=['awful']).validate(CheckContext(current=NoWords()))
  with pytest.raises(ConfigError, match='required and/or forbidden'):
    TopKTokens(k=3)


def test_word_checks_round_trip_through_the_validation_config():
  config = ValidationConfig(checks=[TopKTokens(k=4, forbidden=['the']),
                                    TokenDriftCheck(k=5, min_overlap=0.4)])
  again = ValidationConfig.from_json(config.to_json())
  assert [type(c).__name__ for c in again.checks] == ['TopKTokens', 'TokenDriftCheck']
  assert again.checks[0].forbidden == ['the'] and again.checks[1].min_overlap == 0.4
