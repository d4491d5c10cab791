"""Token attributions against closed forms and brute-force Shapley values.

The models are saved as TFX's imdb example saves its model: tf.saved_model.save
with a Transform stand-in attached as `tft_layer` that splits the raw `text`
on whitespace, looks the words up in a vocabulary (padding 0, unknown words
1) and pads to a fixed length. With mean pooling over the embeddings and a
linear head, the model is additive in its words, whatever their order:

    f(text) = w . sum_p (E[id_p] - E[pad]) / L + f('')

so Integrated Gradients at the embedding and Shapley values of the deletion
game both equal w . (E[id] - E[pad]) / L per word, exactly. An LSTM model is
checked against brute-force Shapley values and IG's completeness.
"""

import itertools
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfx_explain import (ReferenceStats, TokenExpectedGradients, TokenIntegratedGradients,
                         TokenShap)
from tfx_explain.configurable import ConfigError
from tfx_explain.engine.adapters import CallableModelFunction
from tfx_explain.engine.loading import load_model_function
from tfx_explain.engine.text import EmbeddingCut, embedding_cut, tokens_of, top_tokens

VOCABULARY = ['good', 'bad', 'plot', 'film', 'the', 'a', 'great', 'dull']
LENGTH = 8
TEXTS = np.array([b'the film was great', b'a dull plot', b'good', b'', b'bad bad film',
                  b'the plot the film the a good dull bad great'], dtype=object)


class Tokenize(tf.Module):
  """A stand-in for the imdb Transform: words -> ids (pad 0, unknown 1), padded to LENGTH.

  right_aligned pads on the left instead, and drop leaves a word out: either way
  positions do not follow the words.
  """

  def __init__(self, right_aligned=False, drop=None):
    super().__init__()
    self.drop = drop
    self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(VOCABULARY), tf.range(2, len(VOCABULARY) + 2, dtype=tf.int64)), 1)
    self.right_aligned = right_aligned

  @tf.function(input_signature=[{'text': tf.TensorSpec([None, 1], tf.string, name='text')}])
  def __call__(self, features):
    words = tf.strings.split(tf.reshape(features['text'], [-1]))
    if self.drop is not None:   # a stop-word list
      words = tf.ragged.boolean_mask(words, tf.not_equal(words, self.drop))
    ids = tf.ragged.map_flat_values(self.table.lookup, words)
    if self.right_aligned:
      ids = tf.reverse(ids.to_tensor(0, shape=[None, LENGTH]), [1])
    else:
      ids = ids.to_tensor(0, shape=[None, LENGTH])
    return {'text_xf': ids}


def _keras_model(kind: str, seed: int = 0, mask_zero: bool = False):
  ids = tf_keras.Input(shape=(LENGTH,), dtype=tf.int64, name='text_xf')
  embedded = tf_keras.layers.Embedding(len(VOCABULARY) + 2, 4, name='words',
                                       mask_zero=mask_zero)(ids)
  if kind == 'mean':
    hidden = tf_keras.layers.GlobalAveragePooling1D(name='pool')(embedded)
  else:
    hidden = tf_keras.layers.LSTM(5, name='lstm')(embedded)
  output = tf_keras.layers.Dense(1, name='head')(hidden)
  model = tf_keras.Model(inputs={'text_xf': ids}, outputs=output)
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if layer.weights:
      layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.weights])
  return model


def _save(model, path, tokenize=None):
  model.tft_layer = tokenize or Tokenize()

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    features = tf.io.parse_example(serialized, {'text': tf.io.FixedLenFeature([1], tf.string)})
    return {'outputs': model(model.tft_layer(features))}

  tf.saved_model.save(model, path, signatures={'serving_default': serve})
  return path


@pytest.fixture(scope='module')
def mean_model(tmp_path_factory):
  keras_model = _keras_model('mean')
  path = _save(keras_model, str(tmp_path_factory.mktemp('text') / 'mean'))
  return load_model_function(path), keras_model


@pytest.fixture(scope='module')
def lstm_model(tmp_path_factory):
  path = _save(_keras_model('lstm', seed=1), str(tmp_path_factory.mktemp('text') / 'lstm'))
  return load_model_function(path)


def _word_effects(keras_model):
  """Closed form: each vocabulary id's score, w . (E[id] - E[pad]) / L."""
  table = keras_model.get_layer('words').get_weights()[0]
  kernel = keras_model.get_layer('head').get_weights()[0][:, 0]
  return (table - table[0]) @ kernel / LENGTH


def _ids(words):
  return [VOCABULARY.index(w) + 2 if w in VOCABULARY else 1 for w in words]


def _expected_scores(keras_model, texts):
  effects = _word_effects(keras_model)
  expected = []
  for text in texts:
    words = tokens_of(text)
    scores = effects[_ids(words[:LENGTH])]
    expected.append(np.concatenate([scores, np.zeros(max(0, len(words) - LENGTH))]))
  return expected


def test_words_are_the_transform_split():
  assert tokens_of(b'  the  film\twas\ngreat ') == ['the', 'film', 'was', 'great']
  assert tokens_of('') == []


def test_cut_at_the_embedding_serves_the_same_function(mean_model, lstm_model):
  for model in (mean_model[0], lstm_model):
    cut = embedding_cut(model)
    assert cut.ids_input == 'text_xf' and cut.length == LENGTH and cut.dimension == 4
    assert 'words' in cut.lookup_node
    inputs = cut.model_inputs({'text': TEXTS})
    np.testing.assert_allclose(cut.predict(inputs, cut.embed(cut.ids(inputs))),
                               model.predict({'text': TEXTS}), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_equal_the_closed_form(mean_model):
  model, keras_model = mean_model
  result = TokenIntegratedGradients(steps=2).attribute(model, {'text': TEXTS})
  assert result.tokens == [tokens_of(t) for t in TEXTS]
  for scores, expected in zip(result.token_scores, _expected_scores(keras_model, TEXTS)):
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
  # The text column is the sum of the word scores; the baseline is the empty text.
  np.testing.assert_allclose(result.attributions[:, 0], [s.sum() for s in result.token_scores])
  empty = model.predict({'text': np.array([b''], dtype=object)})[0, 0]
  np.testing.assert_allclose(result.baseline_prediction, empty, rtol=1e-5)
  assert np.max(result.completeness_error) < 1e-5


def test_token_shap_equals_the_closed_form_on_an_additive_model(mean_model):
  model, keras_model = mean_model
  texts = TEXTS[:5]   # at most 8 words: every coalition enumerated
  result = TokenShap(num_samples=512).attribute(model, {'text': texts})
  for scores, expected in zip(result.token_scores, _expected_scores(keras_model, texts)):
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)
  assert np.max(result.completeness_error) < 1e-5


def _brute_force_shapley(model, text):
  """Exact Shapley values of the deletion game, every subset of words evaluated."""
  words = tokens_of(text)
  t = len(words)
  subsets = [s for k in range(t + 1) for s in itertools.combinations(range(t), k)]
  texts = np.array([' '.join(words[i] for i in s).encode() for s in subsets], dtype=object)
  value = dict(zip(subsets, model.predict({'text': texts})[:, 0].astype(np.float64)))
  phi = np.zeros(t)
  for j in range(t):
    for s in subsets:
      if j not in s:
        with_j = tuple(sorted(s + (j,)))
        weight = math.factorial(len(s)) * math.factorial(t - len(s) - 1) / math.factorial(t)
        phi[j] += weight * (value[with_j] - value[s])
  return phi


def test_token_shap_equals_brute_force_shapley_on_an_lstm(lstm_model):
  texts = np.array([b'the film was great', b'bad plot a good dull film'], dtype=object)
  result = TokenShap(num_samples=256).attribute(lstm_model, {'text': texts})
  for text, scores in zip(texts, result.token_scores):
    np.testing.assert_allclose(scores, _brute_force_shapley(lstm_model, text), atol=1e-5)


def test_token_shap_samples_long_texts_and_stays_complete(lstm_model):
  text = np.array([b'the plot the film the a good dull bad great film plot'], dtype=object)
  result = TokenShap(num_samples=64).attribute(lstm_model, {'text': text})
  assert result.steps[0] == 64 + 2   # the budget's coalitions, f(x) and f('')
  assert result.completeness_error[0] < 1e-5


def test_integrated_gradients_through_an_lstm_are_complete(lstm_model):
  result = TokenIntegratedGradients(steps=48).attribute(lstm_model, {'text': TEXTS})
  gap = np.abs(result.prediction - result.baseline_prediction)
  assert np.all(result.completeness_error <= 1e-3 * np.maximum(gap, 1.0))
  # Past the model's length, the words are not seen.
  assert len(result.token_scores[5]) == 10 and np.all(result.token_scores[5][LENGTH:] == 0)


def test_expected_gradients_average_over_background_texts(mean_model):
  model, keras_model = mean_model
  background = np.array([b'good film', b'bad', b'the dull plot', b'a'], dtype=object)
  reference = ReferenceStats.from_features({'text': background}, model.input_dtypes,
                                           background_size=4)
  result = TokenExpectedGradients(num_samples=8, background_size=4).attribute(
      model, {'text': TEXTS}, reference)
  served_background = model.predict({'text': reference.background['text']})[:, 0]
  # Every background text used equally (num_samples >= background_size); linear in the
  # embeddings, so the totals are exactly f(x) - mean f(background).
  np.testing.assert_allclose(result.baseline_prediction, served_background.mean(), rtol=1e-5)
  np.testing.assert_allclose(result.attributions[:, 0],
                             result.prediction - served_background.mean(), atol=1e-5)
  top = top_tokens(result, 3)
  assert len(top) == 3 and [m for _, m, _ in top] == sorted([m for _, m, _ in top], reverse=True)
  word, mean, count = top[0]
  occurrences = [abs(s) for words, scores in zip(result.tokens, result.token_scores)
                 for w, s in zip(words, scores) if w == word]
  assert count == len(occurrences) and mean == pytest.approx(np.mean(occurrences))


def test_positions_that_do_not_follow_the_words_are_refused(tmp_path):
  path = _save(_keras_model('mean'), str(tmp_path / 'reversed'), Tokenize(right_aligned=True))
  model = load_model_function(path)
  with pytest.raises(Exception, match=r"do not follow the words of feature 'text'"):
    TokenIntegratedGradients().attribute(model, {'text': TEXTS})
  # The model-agnostic method needs only the served function.
  assert TokenShap(num_samples=64).attribute(model, {'text': TEXTS[:2]}).tokens


def test_a_model_without_a_text_input_is_refused():
  model = CallableModelFunction(lambda f: f['x'][:, None] * 2.0, ['x'])
  with pytest.raises(ConfigError, match=r"token_shap.*no string input"):
    TokenShap().attribute(model, {'x': np.ones(3, np.float32)})
  with pytest.raises(ConfigError, match=r"token_integrated_gradients.*no string input"):
    TokenIntegratedGradients().attribute(model, {'x': np.ones(3, np.float32)})


def test_a_model_without_an_embedding_is_refused_by_the_gradient_methods():
  model = CallableModelFunction(
      lambda f: tf.cast(tf.strings.length(f['text']), tf.float32)[:, None], ['text'],
      input_dtypes={'text': tf.string})
  with pytest.raises(ConfigError, match='cannot cut the model at its embedding'):
    TokenIntegratedGradients().attribute(model, {'text': TEXTS})
  result = TokenShap().attribute(model, {'text': TEXTS[:3]})
  assert np.max(result.completeness_error) < 1e-4


def test_embedding_name_must_name_one_lookup(mean_model):
  with pytest.raises(Exception, match="embedding 'nope' names 0"):
    EmbeddingCut(mean_model[0], 'nope')
  assert os.path.basename(embedding_cut(mean_model[0], 'words').lookup_node)


TOKEN_METHODS = [TokenShap, TokenIntegratedGradients, TokenExpectedGradients]


def test_every_token_method_gets_the_completeness_rule_and_reads_given_outputs(mean_model):
  model = mean_model[0]
  reference = ReferenceStats.from_features({'text': TEXTS}, model.input_dtypes)
  outputs = model.predict({'text': TEXTS})
  for cls in TOKEN_METHODS:
    own = cls().attribute(model, {'text': TEXTS}, reference)
    expected = np.abs(own.attributions[:, 0] - (own.prediction - own.baseline_prediction))
    np.testing.assert_allclose(own.completeness_error, expected, rtol=1e-12, atol=1e-12,
                               err_msg=cls.__name__)
    # One forward pass per batch serves every method: the outputs given are f(x).
    if cls is TokenShap:
      shifted = cls().attribute(model, {'text': TEXTS}, reference, outputs=outputs + 1.0)
      np.testing.assert_allclose(shifted.prediction, own.prediction + 1.0, rtol=1e-6)
    else:   # the cut at x is checked against them
      with pytest.raises(Exception, match='is not the explained function'):
        cls().attribute(model, {'text': TEXTS}, reference, outputs=outputs + 1.0)


def test_the_cut_follows_weights_changed_in_place(tmp_path):
  # A sanity check re-draws a layer's weights in place: the frozen cut must not be stale.
  model = load_model_function(_save(_keras_model('mean', seed=3), str(tmp_path / 'm')))
  before = TokenIntegratedGradients(steps=2).attribute(model, {'text': TEXTS[:2]})
  [table] = [v for v in model.model_variables() if v.shape.rank == 2 and v.shape[1] == 4]
  table.assign(table * 2.0 + 1.0)
  after = TokenIntegratedGradients(steps=2).attribute(model, {'text': TEXTS[:2]})
  np.testing.assert_allclose(after.prediction, model.predict({'text': TEXTS[:2]})[:, 0],
                             rtol=1e-5)
  assert not np.allclose(after.token_scores[0], before.token_scores[0])
  # A stale cut would explain the old weights: its baseline and scores would not add
  # up to the served outputs.
  assert np.max(after.completeness_error) < 1e-4


def test_words_split_on_ascii_whitespace_only_as_the_transform_does(lstm_model):
  # U+00A0 (no-break space) is not a separator for tf.strings.split: one word.
  text = np.array(['the\u00a0film great'.encode('utf-8')], dtype=object)
  assert tokens_of(text[0]) == ['the\u00a0film', 'great']
  for method in (TokenIntegratedGradients(steps=48), TokenShap()):
    result = method.attribute(lstm_model, {'text': text})
    assert result.tokens == [['the\u00a0film', 'great']]
    assert result.completeness_error[0] < 1e-3, method.name


def test_a_transform_that_drops_words_is_refused_by_the_gradient_methods(tmp_path):
  path = _save(_keras_model('mean'), str(tmp_path / 'stopwords'), Tokenize(drop='the'))
  model = load_model_function(path)
  with pytest.raises(Exception, match="do not follow the words of feature 'text'"):
    TokenIntegratedGradients().attribute(model, {'text': TEXTS})
  # Without 'the' the positions are the words again.
  assert TokenIntegratedGradients().attribute(model, {'text': TEXTS[1:5]}).tokens


def test_a_model_that_masks_its_ids_is_refused_by_the_gradient_methods(tmp_path):
  path = _save(_keras_model('lstm', mask_zero=True), str(tmp_path / 'masked'))
  model = load_model_function(path)
  with pytest.raises(ConfigError, match=r'mask_zero=True'):
    TokenIntegratedGradients().attribute(model, {'text': TEXTS})
  result = TokenShap().attribute(model, {'text': TEXTS[:4]})
  assert np.max(result.completeness_error) < 1e-5


def test_chunked_calls_give_the_same_scores(lstm_model, monkeypatch):
  whole = TokenIntegratedGradients(steps=6).attribute(lstm_model, {'text': TEXTS})
  from tfx_explain.engine import text as text_lib  # pylint: disable=g-import-not-at-top
  # Three rows of [LENGTH, 4] embeddings per call: fewer rows than steps.
  monkeypatch.setattr(text_lib, 'MAX_EMBEDDING_FLOATS', 3 * LENGTH * 4)
  assert embedding_cut(lstm_model).rows_per_call == 3
  chunked = TokenIntegratedGradients(steps=6).attribute(lstm_model, {'text': TEXTS})
  for a, b in zip(whole.token_scores, chunked.token_scores):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(whole.baseline_prediction, chunked.baseline_prediction, rtol=1e-6)


def test_token_shap_spends_at_least_two_coalitions_per_word(mean_model):
  model, keras_model = mean_model
  text = np.array([b'the film the plot a good dull bad'], dtype=object)   # 8 words, 254 coalitions
  result = TokenShap(num_samples=2).attribute(model, {'text': text})
  assert result.steps[0] == 2 * 8 + 2 + 2
  # Paired coalitions are exact on an additive game once the regression is determined.
  np.testing.assert_allclose(result.token_scores[0], _expected_scores(keras_model, text)[0],
                             rtol=1e-4, atol=1e-6)


def test_text_held_beside_another_input(tmp_path):
  """A model on text and a float: token methods explain the text, the float held at x."""
  ids = tf_keras.Input(shape=(LENGTH,), dtype=tf.int64, name='text_xf')
  scale = tf_keras.Input(shape=(1,), name='scale')
  pooled = tf_keras.layers.GlobalAveragePooling1D(name='pool')(
      tf_keras.layers.Embedding(len(VOCABULARY) + 2, 4, name='words')(ids))
  output = tf_keras.layers.Dense(1, name='head')(
      tf_keras.layers.Multiply(name='times')([pooled, tf_keras.layers.Dense(4, name='s')(scale)]))
  keras_model = tf_keras.Model(inputs={'text_xf': ids, 'scale': scale}, outputs=output)

  class WithScale(Tokenize):
    @tf.function(input_signature=[{'text': tf.TensorSpec([None, 1], tf.string, name='text'),
                                   'scale': tf.TensorSpec([None, 1], tf.float32, name='scale')}])
    def __call__(self, features):
      return {'text_xf': Tokenize.__call__.python_function(self, {'text': features['text']})[
          'text_xf'], 'scale': features['scale']}

  keras_model.tft_layer = WithScale()

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    features = tf.io.parse_example(serialized, {
        'text': tf.io.FixedLenFeature([1], tf.string),
        'scale': tf.io.FixedLenFeature([1], tf.float32)})
    return {'outputs': keras_model(keras_model.tft_layer(features))}

  path = str(tmp_path / 'two')
  tf.saved_model.save(keras_model, path, signatures={'serving_default': serve})
  model = load_model_function(path)
  rows = {'text': TEXTS[:3], 'scale': np.array([0.5, 1.0, 2.0], np.float32)}
  for method in (TokenIntegratedGradients(steps=2), TokenShap()):
    result = method.attribute(model, rows)
    assert result.skipped_features == ['scale']
    column = result.feature_names.index('text')
    assert np.isnan(result.attributions[:, 1 - column]).all()
    assert np.max(result.completeness_error) < 1e-5, method.name
  # The empty text at each example's own scale.
  empty = model.predict({'text': np.full(3, b'', dtype=object), 'scale': rows['scale']})[:, 0]
  np.testing.assert_allclose(result.baseline_prediction, empty, rtol=1e-5)
