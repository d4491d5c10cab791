"""TokenShap against shap's KernelExplainer on the same word-deletion game, both against exact
Shapley values.

A text model (word ids -> Embedding -> LSTM -> logit, trained here on the
generated review corpus of the reviews pipeline (pipelines/reviews/data.py), planted sentiment words
deciding the label) explains reviews of 10 to 12 words. The game: a coalition
of words is the review with the other words deleted. Exact Shapley values
enumerate all 2^T coalitions of each review. At equal budgets of model
evaluations per review, TokenShap (all reviews' coalitions in one batched
prediction, paired and stratified coalitions) and shap.KernelExplainer (one
review at a time, its own batched call per review, on 0/1 word masks) are
timed, and their errors taken against the exact values:

    error = mean |estimate - exact| / mean |exact| over every word of every review

Ratios are shap's ÷ ours, fastest of alternating repeats for time.

    python benchmarks/token_shap.py [--out results/token_shap.json]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position

BUDGETS = (64, 256)
REVIEWS = 24
WORDS = (10, 12)
REPEATS = 2
LENGTH = 32


def text_model(seed: int = 0):
  """A CallableModelFunction on the raw `text`: whitespace words, vocabulary, LSTM, logit."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.reviews import data  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from tfx_explain.engine.adapters import CallableModelFunction
  with tempfile.TemporaryDirectory() as directory:
    frame = pd.read_csv(data.write_reviews(directory, rows=1200, seed=seed))
  vocabulary = sorted({w for text in frame['text'] for w in text.split()})
  table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      tf.constant(vocabulary), tf.range(2, len(vocabulary) + 2, dtype=tf.int64)), 1)

  def ids_of(texts):
    words = tf.strings.split(tf.reshape(texts, [-1]))
    return tf.ragged.map_flat_values(table.lookup, words).to_tensor(0, shape=[None, LENGTH])

  tf_keras.utils.set_random_seed(seed)
  model = tf_keras.Sequential([
      tf_keras.layers.Embedding(len(vocabulary) + 2, 16, name='words'),
      tf_keras.layers.LSTM(16, name='lstm'), tf_keras.layers.Dense(1, name='logit')])
  model.compile(optimizer=tf_keras.optimizers.Adam(0.01),
                loss=tf_keras.losses.BinaryCrossentropy(from_logits=True))
  model.fit(ids_of(tf.constant(frame['text'].to_numpy(dtype=str))),
            frame['label'].to_numpy(np.float32), epochs=4, batch_size=32, verbose=0)
  function = CallableModelFunction(lambda f: model(ids_of(f['text'])), ['text'],
                                   input_dtypes={'text': tf.string})
  return function, frame


def exact_shapley(model, words) -> np.ndarray:
  """Shapley values of the deletion game over all 2^T coalitions of one review."""
  t = len(words)
  masks = ((np.arange(2 ** t)[:, None] >> np.arange(t)) & 1).astype(bool)
  texts = np.array([' '.join(w for w, keep in zip(words, m) if keep).encode() for m in masks],
                   dtype=object)
  values = model.predict({'text': texts})[:, 0].astype(np.float64)
  sizes = masks.sum(axis=1)
  phi = np.zeros(t)
  for j in range(t):
    without = ~masks[:, j]
    subsets = np.nonzero(without)[0]
    with_j = subsets | (1 << j)
    weights = np.array([math.factorial(s) * math.factorial(t - s - 1) / math.factorial(t)
                        for s in sizes[subsets]])
    phi[j] = np.sum(weights * (values[with_j] - values[subsets]))
  return phi


def shap_kernel(model, words, budget: int) -> np.ndarray:
  import shap  # pylint: disable=g-import-not-at-top

  def game(masks):
    texts = np.array([' '.join(w for w, keep in zip(words, m) if keep > 0.5).encode()
                      for m in masks], dtype=object)
    return model.predict({'text': texts})[:, 0]

  explainer = shap.KernelExplainer(game, np.zeros((1, len(words))))
  return np.asarray(explainer.shap_values(np.ones((1, len(words))), nsamples=budget,
                                          silent=True)).reshape(-1)


def figures_for(model, texts, exact, budget: int) -> dict:
  from tfx_explain import TokenShap  # pylint: disable=g-import-not-at-top
  words = [t.decode().split() for t in texts]
  ours = {}
  theirs = {}

  def run_ours():
    ours['phi'] = TokenShap(num_samples=budget).attribute(model, {'text': texts}).token_scores

  def run_shap():
    theirs['phi'] = [shap_kernel(model, w, budget) for w in words]

  ours_s, shap_s = common.timed_alternating([run_ours, run_shap], REPEATS)
  scale = np.mean(np.abs(np.concatenate(exact)))

  def error(estimates):
    return float(np.mean(np.abs(np.concatenate(estimates) - np.concatenate(exact))) / scale)

  result = {'budget': budget, 'ours_s': ours_s, 'shap_s': shap_s,
            'shap_over_ours_time': shap_s / ours_s, 'ours_error': error(ours['phi']),
            'shap_error': error(theirs['phi'])}
  result['shap_over_ours_error'] = result['shap_error'] / result['ours_error']
  print(f"  budget {budget}: ours {ours_s:.2f} s, error {result['ours_error']:.4f}; shap "
        f"{shap_s:.2f} s, error {result['shap_error']:.4f}", flush=True)
  return result


def headline(figures: dict) -> list:
  rows = []
  for case in figures['budgets']:
    rows.append({'figure': f"TokenShap, shap KernelExplainer ÷ engine, time ({case['budget']} "
                           'evaluations per review)', 'value': case['shap_over_ours_time'],
                 'target': None})
    rows.append({'figure': f"TokenShap, shap KernelExplainer ÷ engine, error vs exact "
                           f"({case['budget']} evaluations per review)",
                 'value': case['shap_over_ours_error'], 'target': None})
  return rows


def markdown_table(figures: dict) -> str:
  lines = [f"TokenShap against shap's KernelExplainer on the word-deletion game of "
           f"{figures['reviews']} reviews of {WORDS[0]}-{WORDS[1]} words (an LSTM text model); "
           f"errors against exact Shapley values; {common.machine_text(figures['machine'])}.",
           '', '| evaluations per review | engine (s) | shap (s) | shap ÷ engine, time | '
           'engine error | shap error | shap ÷ engine, error |',
           '|---:|---:|---:|---:|---:|---:|---:|']
  for case in figures['budgets']:
    lines.append(f"| {case['budget']} | {case['ours_s']:.2f} | {case['shap_s']:.2f} | "
                 f"{case['shap_over_ours_time']:.2f} | {case['ours_error']:.4f} | "
                 f"{case['shap_error']:.4f} | {case['shap_over_ours_error']:.2f} |")
  lines += ['', 'Error: mean |estimate - exact| / mean |exact| over every word. Both run the '
            'same model function; the engine sends every review\'s coalitions through one '
            'batched prediction, shap one call per review.']
  return '\n'.join(lines) + '\n'


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--out', default=os.path.join(common.RESULTS_DIR, 'token_shap.json'))
  args = parser.parse_args(argv)
  model, frame = text_model()
  counts = frame['text'].str.split().str.len()
  chosen = frame[(counts >= WORDS[0]) & (counts <= WORDS[1])]['text'][-REVIEWS:]
  texts = np.array([t.encode() for t in chosen], dtype=object)
  exact = [exact_shapley(model, t.decode().split()) for t in texts]
  figures = {'machine': common.machine(), 'reviews': len(texts),
             'budgets': [figures_for(model, texts, exact, b) for b in BUDGETS]}
  figures['headline'] = headline(figures)
  common.write_results(args.out, figures, markdown_table(figures))
  return figures


if __name__ == '__main__':
  main(sys.argv[1:])
