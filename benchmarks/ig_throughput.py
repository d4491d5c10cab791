"""Integrated Gradients throughput: our engine vs the raw limit, PAIR saliency and shap.

For each model (the penguin MLP, a 100-feature MLP and the digits CNN) and
the same examples, baseline and number of interpolation points:

  engine / limit      limit = one compiled gradient call over all interpolation
                      points of the batch, points prebuilt as a tensor
  engine / saliency   PAIR saliency IntegratedGradients, batch_size = steps,
                      given a compiled gradient function
  engine / shap       shap.GradientExplainer, nsamples = steps, batch_size =
                      steps, explaining the predicted class only (as we do)

Timings are best-of-N with the implementations interleaved.

    python benchmarks/ig_throughput.py [--steps 51] [--out results/ig_throughput.json]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-order
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from tfx_explain import ImageIntegratedGradients, IntegratedGradients  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.image_model import ImageModel  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.adapters import KerasModelFunction  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top

TARGET_VS_LIMIT = 0.8
TARGET_VS_REFERENCES = 10.0


def saliency_ig(twin, x, baselines, targets, steps):
  """A function running PAIR saliency IG over the rows of x, one model call per example."""
  import saliency.core as saliency  # pylint: disable=g-import-not-at-top
  spec = tf.TensorSpec((None,) + x.shape[1:], tf.float32)

  # Compiled once, so saliency is measured at its best, not with eager overhead.
  @tf.function(input_signature=[spec, tf.TensorSpec([], tf.int32)])
  def gradients(inputs, target):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      out = tf.reduce_sum(twin(inputs, training=False)[:, target])
    return tape.gradient(out, inputs)

  def call_model(x_batch, call_model_args=None, expected_keys=None):
    del expected_keys
    grads = gradients(tf.constant(x_batch, tf.float32), tf.constant(call_model_args['target']))
    return {saliency.base.INPUT_OUTPUT_GRADIENTS: grads.numpy()}

  ig = saliency.IntegratedGradients()

  def run():
    return np.stack([ig.GetMask(x[i], call_model, {'target': int(targets[i])}, x_steps=steps,
                                x_baseline=baselines[i], batch_size=steps)
                     for i in range(len(x))])
  return run


def shap_gradient(twin, x, background, steps):
  import shap  # pylint: disable=g-import-not-at-top
  explainer = shap.GradientExplainer(twin, background, batch_size=steps)

  def run():
    return explainer.shap_values(x, nsamples=steps, ranked_outputs=1, output_rank_order='max',
                                 rseed=0)
  return run


def tabular_figures(spec: common.TabularModel, n: int, steps: int, repeats: int,
                    k: int) -> dict:
  rng = np.random.default_rng(0)
  rows = rng.choice(len(spec.labels), size=n, replace=n > len(spec.labels))
  features = spec.take(rows)
  model_fn = KerasModelFunction(spec.model)
  reference = ReferenceStats.from_features(
      {name: spec.features[name] for name in model_fn.input_names}, model_fn.input_dtypes)
  # The references integrate the float path only (string inputs held at x): so does ours
  # here. The default also steps the strings (discrete='symmetric'), at about twice the cost.
  method = IntegratedGradients(steps=steps, baseline='mean', rule='trapezoid', discrete='skip')
  result = method.attribute(model_fn, features, reference, 'predicted')
  targets = result.target.astype(np.int32)
  floats, strings = spec.float_names, spec.string_names
  base_vec = np.asarray([reference.mean[name] for name in floats], np.float32)
  matrix = np.stack([features[name] for name in floats], axis=1).astype(np.float32)

  # The limit: all n x steps points prebuilt, string inputs repeated, one gradient call.
  alphas = np.linspace(0, 1, steps, dtype=np.float32)
  points = tf.constant((base_vec + alphas[None, :, None] * (matrix - base_vec)[:, None, :])
                       .reshape(n * steps, -1))
  repeated = {name: tf.constant(np.repeat(features[name], steps)[:, None]) for name in strings}
  point_targets = tf.constant(np.repeat(targets, steps))

  @tf.function
  def limit_pass(points, point_targets):
    with tf.GradientTape() as tape:
      tape.watch(points)
      # One split, not a slice per column: the gradient of a split is one concat.
      columns = dict(zip(floats, tf.split(points, len(floats), axis=1)))
      columns.update(repeated)
      out = tf.gather(spec.model(columns, training=False), point_targets, axis=1, batch_dims=1)
      total = tf.reduce_sum(out)
    return tape.gradient(total, points)

  # Reference libraries run on the dense twin. Its baseline keeps each example's
  # one-hot codes, so string inputs are held at their values, as in the engine.
  x_twin = spec.to_twin(features)
  baselines = x_twin.copy()
  baselines[:, :len(floats)] = base_vec
  run_saliency = saliency_ig(spec.twin, x_twin[:k], baselines[:k], targets[:k], steps)
  run_shap = shap_gradient(spec.twin, x_twin[:k], x_twin[-50:], steps)
  run_engine = lambda: method.attribute(model_fn, features, reference, 'predicted')

  limit_s, engine_s = common.timed_alternating(
      [lambda: limit_pass(points, point_targets).numpy(), run_engine], repeats)
  engine_again_s, saliency_s, shap_s = common.timed_alternating(
      [run_engine, run_saliency, run_shap], max(2, repeats // 6))
  engine_s = min(engine_s, engine_again_s)

  # Same computation check: saliency's IG (endpoint-inclusive mean) vs ours (trapezoid).
  saliency_attr = run_saliency()[:, :len(floats)]
  engine_attr = result.attributions[:k, [model_fn.input_names.index(f) for f in floats]]
  agreement = float(np.abs(saliency_attr - engine_attr).max() / np.abs(engine_attr).max())
  return _figures(spec.description, n, k, steps, limit_s, engine_s, saliency_s, shap_s,
                  float(np.percentile(result.completeness_error, 95)), agreement)


def digits_figures(n: int, steps: int, repeats: int, k: int) -> dict:
  model, images, _ = common.digits_model()
  images = images[:n]
  image_model = ImageModel(model)
  method = ImageIntegratedGradients(steps=steps, baseline='black', rule='trapezoid')
  result = method.attribute(image_model, images)
  targets = result.target.astype(np.int32)
  alphas = np.linspace(0, 1, steps, dtype=np.float32)
  points = tf.constant((alphas[None, :, None, None, None] * images[:, None])
                       .reshape((n * steps,) + images.shape[1:]))
  point_targets = tf.constant(np.repeat(targets, steps))

  @tf.function
  def limit_pass(points, point_targets):
    with tf.GradientTape() as tape:
      tape.watch(points)
      out = tf.gather(model(points, training=False), point_targets, axis=1, batch_dims=1)
      total = tf.reduce_sum(out)
    return tape.gradient(total, points)

  run_saliency = saliency_ig(model, images[:k], np.zeros_like(images[:k]), targets[:k], steps)
  run_shap = shap_gradient(model, images[:k], images[-50:], steps)
  run_engine = lambda: method.attribute(image_model, images)
  limit_s, engine_s = common.timed_alternating(
      [lambda: limit_pass(points, point_targets).numpy(), run_engine], repeats)
  engine_again_s, saliency_s, shap_s = common.timed_alternating(
      [run_engine, run_saliency, run_shap], max(2, repeats // 4))
  engine_s = min(engine_s, engine_again_s)
  saliency_maps = run_saliency()
  agreement = float(np.abs(saliency_maps - result.maps[:k]).max() / np.abs(result.maps[:k]).max())
  return _figures('digits CNN (8x8x1 input, conv 16-32, 10 classes)', n, k, steps, limit_s,
                  engine_s, saliency_s, shap_s,
                  float(np.percentile(result.completeness_error, 95)), agreement)


def _figures(model, n, k, steps, limit_s, engine_s, saliency_s, shap_s, error_p95, agreement):
  engine = n / engine_s
  figures = {
      'model': model, 'examples': n, 'reference_examples': k, 'steps': steps,
      'engine_examples_per_s': engine, 'limit_examples_per_s': n / limit_s,
      'saliency_examples_per_s': k / saliency_s, 'shap_gradient_examples_per_s': k / shap_s,
      'engine_completeness_error_p95': error_p95,
      'saliency_vs_engine_max_relative_difference': agreement,
  }
  figures['engine_vs_limit'] = engine / figures['limit_examples_per_s']
  figures['engine_vs_saliency'] = engine / figures['saliency_examples_per_s']
  figures['engine_vs_shap_gradient'] = engine / figures['shap_gradient_examples_per_s']
  return figures


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--examples', type=int, default=256, help='tabular examples per engine call')
  parser.add_argument('--image-examples', type=int, default=64)
  parser.add_argument('--steps', type=int, default=51)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--reference-examples', type=int, default=64,
                      help='examples given to saliency and shap (they run one at a time)')
  parser.add_argument('--out', default=os.path.join(common.RESULTS_DIR, 'ig_throughput.json'))
  args = parser.parse_args(argv)

  models = {}
  for spec in (common.penguin_model(), common.wide_model()):
    models[spec.name] = tabular_figures(spec, args.examples, args.steps, args.repeats,
                                        args.reference_examples)
  models['digits'] = digits_figures(args.image_examples, args.steps, max(4, args.repeats // 2),
                                    min(args.reference_examples, args.image_examples))
  figures = {'machine': common.machine(), 'models': models}
  figures['headline'] = headline(models)
  common.write_results(args.out, figures, markdown_table(figures))
  return figures


def headline(models: dict) -> list:
  rows = []
  for name, m in models.items():
    rows.append({'figure': f'IG engine ÷ limit ({name})', 'value': m['engine_vs_limit'],
                 'target': TARGET_VS_LIMIT, 'pass': m['engine_vs_limit'] >= TARGET_VS_LIMIT})
    for key, label in (('saliency', 'PAIR saliency'), ('shap_gradient', 'shap GradientExplainer')):
      value = m[f'engine_vs_{key}']
      rows.append({'figure': f'IG engine ÷ {label} ({name})', 'value': value,
                   'target': TARGET_VS_REFERENCES, 'pass': value >= TARGET_VS_REFERENCES})
  return rows


def markdown_table(figures: dict) -> str:
  lines = [f"Integrated Gradients throughput; {common.machine_text(figures['machine'])}.", '',
           '| model | steps | engine ex/s | limit ex/s | engine ÷ limit | saliency ex/s | '
           'engine ÷ saliency | shap ex/s | engine ÷ shap | completeness p95 |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for m in figures['models'].values():
    lines.append(
        f"| {m['model']} | {m['steps']} | {m['engine_examples_per_s']:,.0f} | "
        f"{m['limit_examples_per_s']:,.0f} | {m['engine_vs_limit']:.2f} | "
        f"{m['saliency_examples_per_s']:,.0f} | {m['engine_vs_saliency']:.1f} | "
        f"{m['shap_gradient_examples_per_s']:,.0f} | {m['engine_vs_shap_gradient']:.1f} | "
        f"{m['engine_completeness_error_p95']:.1e} |")
  lines += ['', 'Targets: engine ÷ limit >= 0.8; engine ÷ saliency and engine ÷ shap >= 10.',
            'saliency and shap run on the dense twin of each model (same layers, string inputs '
            'as one-hot codes); shap explains the predicted class only, as the engine does. '
            'Largest difference between saliency\'s and the engine\'s attributions, relative to '
            'the largest attribution: ' + ', '.join(
                f"{name} {m['saliency_vs_engine_max_relative_difference']:.1e}"
                for name, m in figures['models'].items()) + '.']
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main(sys.argv[1:])
