"""Integrated Gradients throughput: our engine vs the raw limit, PAIR saliency and shap.

All figures come from the same run on the same model (an MLP 30-64-64-2 over
the 30 breast-cancer features from scikit-learn), same examples, same number
of interpolation points. Reported as examples/second and as ratios:

  engine / limit      limit = one batched gradient pass over all interpolation
                      points of the batch, points prebuilt as tensors
  engine / saliency   PAIR saliency IntegratedGradients, batch_size = steps
  engine / shap       shap.GradientExplainer, nsamples = steps

    python benchmarks/ig_throughput.py [--examples 256] [--steps 51] [--out results/ig.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

from tfx_explain import IntegratedGradients  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.model import KerasModelFunction  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top


def build_models(num_features: int, seed: int = 0):
  """A named-input MLP and a single-tensor twin sharing its layers (for saliency/shap)."""
  tf_keras.utils.set_random_seed(seed)
  names = [f'f{i:02d}' for i in range(num_features)]
  inputs = [tf_keras.Input(shape=(1,), name=n) for n in names]
  hidden1 = tf_keras.layers.Dense(64, activation='relu')
  hidden2 = tf_keras.layers.Dense(64, activation='relu')
  head = tf_keras.layers.Dense(2, activation='softmax')
  named = tf_keras.Model(inputs, head(hidden2(hidden1(tf_keras.layers.concatenate(inputs)))))
  dense_input = tf_keras.Input(shape=(num_features,))
  dense = tf_keras.Model(dense_input, head(hidden2(hidden1(dense_input))))
  return names, named, dense


def load_data(n: int, seed: int = 0):
  from sklearn.datasets import load_breast_cancer  # pylint: disable=g-import-not-at-top
  x = load_breast_cancer().data.astype(np.float32)
  x = (x - x.mean(axis=0)) / x.std(axis=0)
  rng = np.random.default_rng(seed)
  return x[rng.choice(len(x), size=n, replace=n > len(x))]


def timed(fn, repeats: int):
  return timed_alternating([fn], repeats)[0]


def timed_alternating(fns, repeats: int):
  """Best-of-N seconds per function, runs interleaved so load on the machine hits all alike."""
  for fn in fns:
    fn()  # warm-up: tracing and first allocation
  best = [float('inf')] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      fn()
      best[i] = min(best[i], time.perf_counter() - start)
  return best


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--examples', type=int, default=256)
  parser.add_argument('--steps', type=int, default=51)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--saliency-examples', type=int, default=64)
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)

  x = load_data(args.examples)
  names, named_model, dense_model = build_models(x.shape[1])
  features = {n: x[:, i] for i, n in enumerate(names)}
  baseline = np.zeros(x.shape[1], np.float32)
  reference = ReferenceStats.from_features(features)
  model_fn = KerasModelFunction(named_model)
  targets = np.argmax(named_model.predict(dict(features), verbose=0), axis=1).astype(np.int32)
  m, n = args.steps, args.examples

  # 1. The limit: all N x m points prebuilt, one gradient call.
  alphas = tf.constant(np.linspace(0, 1, m, dtype=np.float32))
  points = tf.constant((baseline + alphas.numpy()[None, :, None] * (x - baseline)[:, None, :])
                       .reshape(n * m, -1))
  point_targets = tf.constant(np.repeat(targets, m))

  @tf.function
  def limit_pass(points, point_targets):
    with tf.GradientTape() as tape:
      tape.watch(points)
      columns = {name: points[:, i:i + 1] for i, name in enumerate(names)}
      out = tf.gather(named_model(columns, training=False), point_targets, axis=1, batch_dims=1)
      total = tf.reduce_sum(out)
    return tape.gradient(total, points)

  # 2. Our engine, whole batch per call, timed interleaved with the limit.
  method = IntegratedGradients(steps=m, baseline='zeros', rule='trapezoid')
  limit_s, engine_s = timed_alternating(
      [lambda: limit_pass(points, point_targets).numpy(),
       lambda: method.attribute(model_fn, features, reference, 'predicted')], args.repeats)
  result = method.attribute(model_fn, features, reference, 'predicted')

  figures = {
      'machine': f'{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, '
                 f'TF {tf.__version__}',
      'model': f'MLP {x.shape[1]}-64-64-2 (breast cancer features)',
      'examples': n, 'steps': m,
      'limit_examples_per_s': n / limit_s,
      'engine_examples_per_s': n / engine_s,
      'engine_completeness_error_p95': float(np.percentile(result.completeness_error, 95)),
  }

  # 3. PAIR saliency, one example per call, batch_size = steps.
  try:
    import saliency.core as saliency  # pylint: disable=g-import-not-at-top
    k = min(args.saliency_examples, n)

    # Compiled once, so saliency is measured at its best, not with eager overhead.
    @tf.function(input_signature=[tf.TensorSpec([None, x.shape[1]], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def gradients(inputs, target):
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = tf.reduce_sum(dense_model(inputs, training=False)[:, target])
      return tape.gradient(out, inputs)

    def call_model(x_batch, call_model_args=None, expected_keys=None):
      del expected_keys
      grads = gradients(tf.constant(x_batch, tf.float32), tf.constant(call_model_args['target']))
      return {saliency.base.INPUT_OUTPUT_GRADIENTS: grads.numpy()}

    ig = saliency.IntegratedGradients()

    def run_saliency():
      for i in range(k):
        ig.GetMask(x[i], call_model, {'target': int(targets[i])}, x_steps=m,
                   x_baseline=baseline, batch_size=m)

    saliency_s = timed(run_saliency, 3)
    figures['saliency_examples_per_s'] = k / saliency_s
  except ImportError as e:
    figures['saliency_error'] = str(e)

  # 4. shap GradientExplainer (expected gradients), nsamples = steps.
  try:
    import shap  # pylint: disable=g-import-not-at-top
    k = min(args.saliency_examples, n)
    explainer = shap.GradientExplainer(dense_model, x[:50])
    shap_s = timed(lambda: explainer.shap_values(x[:k], nsamples=m), 3)
    figures['shap_gradient_examples_per_s'] = k / shap_s
  except Exception as e:  # pylint: disable=broad-except
    figures['shap_error'] = f'{type(e).__name__}: {e}'

  figures['engine_vs_limit'] = figures['engine_examples_per_s'] / figures['limit_examples_per_s']
  for key in ('saliency', 'shap_gradient'):
    if f'{key}_examples_per_s' in figures:
      figures[f'engine_vs_{key}'] = figures['engine_examples_per_s'] / figures[f'{key}_examples_per_s']
  print(json.dumps(figures, indent=1))
  table = markdown_table(figures)
  print(table)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(figures, f, indent=1)
    with open(os.path.splitext(args.out)[0] + '.md', 'w') as f:
      f.write(table)
  return figures


def markdown_table(figures: dict) -> str:
  rows = [('tfx-explain engine', 'engine_examples_per_s', None),
          ('limit: one batched gradient pass', 'limit_examples_per_s', 'engine_vs_limit'),
          ('PAIR saliency IG (batch_size = steps)', 'saliency_examples_per_s', 'engine_vs_saliency'),
          ('shap GradientExplainer (nsamples = steps)', 'shap_gradient_examples_per_s',
           'engine_vs_shap_gradient')]
  lines = [f"Integrated Gradients, {figures['model']}, {figures['steps']} points, "
           f"{figures['examples']} examples; {figures['machine']}.", '',
           '| implementation | examples/s | engine ÷ this |', '|---|---:|---:|']
  for label, key, ratio in rows:
    if key in figures:
      ratio_text = f'{figures[ratio]:.2f}' if ratio and ratio in figures else '—'
      lines.append(f'| {label} | {figures[key]:,.0f} | {ratio_text} |')
  lines.append('')
  lines.append(f"Engine completeness error p95: {figures['engine_completeness_error_p95']:.1e}")
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main(sys.argv[1:])
