"""TFX's imdb example, its module copied unmodified from the installed tfx.

    CsvExampleGen (reviews: label,text) -> StatisticsGen -> SchemaGen -> Transform
      -> Trainer (imdb_utils_native_keras: vocabulary, Embedding, BiLSTM, logit)
      raw examples + transform_graph + model -> AttributionGen (token methods)
        -> ExplanationValidator -> Pusher

The corpus is generated: neutral words and one to three planted sentiment words
that decide each review's label (`tfx_examples.write_imdb_reviews`). The model
takes `text` as a string through its Transform (split, vocabulary, padding to
400 ids); the token methods must name the planted words as what moves it,
store every example's words with their scores, summarise them per word and
slice, and gate Pusher on checks of the words.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import (AttributionConfig, CompletenessCheck, TokenDriftCheck,
                         TokenExpectedGradients, TokenIntegratedGradients, TokenShap, TopKTokens,
                         ValidationConfig)
from tfx_explain.engine.text import tokens_of
from tests import tfx_examples
from tests.test_reports_in_browser import assert_rendered, render

METHODS = ['token_expected_gradients', 'token_integrated_gradients', 'token_shap']
PLANTED = set(tfx_examples.IMDB_POSITIVE_WORDS + tfx_examples.IMDB_NEGATIVE_WORDS)


def _our_components(serving_dir, example_gen, statistics_gen, schema_gen, transform, trainer):
  del statistics_gen
  return tfx_examples.explain_validate_push(
      serving_dir, example_gen, schema_gen, transform, trainer,
      AttributionConfig(
          methods=[TokenShap(num_samples=128), TokenIntegratedGradients(steps=24),
                   TokenExpectedGradients(num_samples=16, background_size=30)],
          splits=['eval'], label_key='label', slicing_specs=[[], ['label']],
          background_size=30),
      ValidationConfig(checks=[
          CompletenessCheck(method='token_integrated_gradients', max_relative_error_p95=0.05,
                            per_slice=False),
          TopKTokens(k=6, required=['awful', 'superb'], forbidden=['the', 'film'],
                     method='token_shap'),
          TokenDriftCheck(k=6, min_overlap=0.5)]))


@pytest.fixture(scope='module')
def tfx_imdb(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfx_imdb'))
  serving_dir = os.path.join(root, 'serving_model')
  trained = tfx_examples.run_imdb_pipeline(
      root, train_steps=400,
      extra_components=lambda *base: _our_components(serving_dir, *base))
  return trained, serving_dir


def _latest(trained, type_name, node):
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  return PipelineStore(trained.metadata_path).latest_uri(type_name, node)


@pytest.mark.slow
def test_module_is_tfx_own(tfx_imdb):
  trained, _ = tfx_imdb
  with open(trained.module_file, 'rb') as copied, open(tfx_examples.tfx_example_path(
      'imdb', tfx_examples.IMDB_MODULE), 'rb') as original:
    assert copied.read() == original.read()


@pytest.mark.slow
def test_planted_words_rank_on_top(tfx_imdb):
  trained, _ = tfx_imdb
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  for method in METHODS:
    words = tfx_explain.load_token_summary(uri, 'eval', method=method, slice_name='Overall')
    seen = words[words['count'] >= 2]
    top = list(seen['token'][:len(PLANTED)])
    assert set(top) == PLANTED, (method, seen.head(10))
    # Positive words raise the logit, negative ones lower it.
    mean = dict(zip(seen['token'], seen['mean_attribution']))
    assert all(mean[w] > 0 for w in tfx_examples.IMDB_POSITIVE_WORDS), (method, mean)
    assert all(mean[w] < 0 for w in tfx_examples.IMDB_NEGATIVE_WORDS), (method, mean)
  # Per slice: the reviews labelled 1 hold only positive planted words.
  positive = tfx_explain.load_token_summary(uri, 'eval', method='token_shap',
                                            slice_name='label=1')
  assert not set(positive['token']) & set(tfx_examples.IMDB_NEGATIVE_WORDS)
  assert set(positive[positive['count'] >= 2]['token'][:3]) == set(
      tfx_examples.IMDB_POSITIVE_WORDS)


@pytest.mark.slow
def test_every_example_stores_its_words_and_scores(tfx_imdb):
  trained, _ = tfx_imdb
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  frame = tfx_explain.load_attributions(uri, 'eval')
  assert sorted(set(frame['method'])) == METHODS
  records = tfx_examples.serialized_examples(trained.examples_uri, 'eval')
  texts = [tf.train.Example.FromString(r).features.feature['text'].bytes_list.value[0]
           for r in records]
  for method in METHODS:
    rows = frame[frame['method'] == method]
    assert len(rows) == len(records)
    for row in rows.itertuples():
      assert list(row.tokens) == tokens_of(texts[row.example_index])
      assert len(row.token_scores) == len(row.tokens)
    totals = rows['text'].to_numpy()
    if method != 'token_expected_gradients':   # EG's total also counts padding positions
      np.testing.assert_allclose(totals, [np.sum(s) for s in rows['token_scores']], atol=1e-9)
  shap = frame[frame['method'] == 'token_shap']
  np.testing.assert_allclose(shap['text'], shap['prediction'] - shap['baseline_prediction'],
                             atol=1e-5)


@pytest.mark.slow
def test_explained_function_is_the_served_one(tfx_imdb):
  trained, _ = tfx_imdb
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  frame = tfx_explain.load_attributions(uri, 'eval', method='token_integrated_gradients')
  records = tfx_examples.serialized_examples(trained.examples_uri, 'eval')
  loaded = tf.saved_model.load(os.path.join(trained.model_uri, 'Format-Serving'))
  served = loaded.signatures['serving_default'](examples=tf.constant(records))
  [logits] = served.values()
  np.testing.assert_allclose(frame['prediction'], logits.numpy()[frame['example_index'], 0],
                             rtol=1e-4, atol=1e-4)
  # The baseline is the empty review.
  empty = tf.train.Example()
  empty.features.feature['text'].bytes_list.value.append(b'')
  [at_empty] = loaded.signatures['serving_default'](
      examples=tf.constant([empty.SerializeToString()])).values()
  np.testing.assert_allclose(frame['baseline_prediction'], at_empty.numpy()[0, 0], rtol=1e-4,
                             atol=1e-4)


@pytest.mark.slow
def test_word_checks_bless_and_pusher_pushes(tfx_imdb):
  trained, serving_dir = tfx_imdb
  blessing = _latest(trained, 'ModelBlessing', 'ExplanationValidator')
  validation = tfx_explain.load_validation(
      _latest(trained, 'tfx_explain.ExplanationValidation', 'ExplanationValidator'))
  checks = {(c['check'], c.get('feature')): c for c in validation['checks']}
  assert checks[('top_k_tokens', 'awful')]['passed']
  assert checks[('top_k_tokens', 'the')]['passed']
  assert os.path.exists(os.path.join(blessing, 'BLESSED')), validation
  assert os.listdir(serving_dir)


@pytest.mark.slow
def test_report_highlights_the_words_in_a_browser(tfx_imdb, tmp_path):
  trained, _ = tfx_imdb
  uri = _latest(trained, 'tfx_explain.Attributions', 'AttributionGen')
  path = os.path.join(uri, 'report.html')
  html = open(path, encoding='utf-8').read()
  assert '<script' not in html
  screenshot, dom, console = render(path, tmp_path)
  assert 'first examples' in dom and 'top words' in dom
  # Words on coloured backgrounds, their scores as tooltips.
  assert dom.count('<span style="background: rgba(') > 100
  assert any(f'>{word}</span>' in dom for word in PLANTED)
  assert_rendered(screenshot, console)
