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

Adaptive Integrated Gradients (steps='auto', tolerance 1e-3) on the same
models: the p95 relative completeness error it reaches and the gradient
points it spends in all, against the fewest points fixed-step IG needs for
the same p95 (doubling, then bisection, over steps; trapezoid and
Gauss-Legendre, whichever needs fewer); attribution errors of both against
4096-point Gauss-Legendre IG.

Expected Gradients (wide and digits: all-float inputs, so shap's
GradientExplainer, which is Expected Gradients, sees the same model) at equal
gradient rows per example: error against the exact expectation (256-point
Gauss-Legendre IG against every background row, averaged), for the
engine, for independent (baseline, alpha) draws (Erion's estimator, shap's)
and for 4 Gauss-Legendre alphas per baseline computed with the engine's model,
and for shap itself; and engine ÷ shap speed.

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

from tfx_explain import ExpectedGradients, ImageIntegratedGradients, IntegratedGradients  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.image_model import ImageModel  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.adapters import KerasModelFunction  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top

TARGET_VS_LIMIT = 0.8
TARGET_VS_REFERENCES = 10.0
TOLERANCE = 1e-3
TARGET_ADAPTIVE_P95 = TOLERANCE
TARGET_ADAPTIVE_VS_FIXED = 0.5
TARGET_EG_ERROR_VS_SHAP = 1.0


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


def digits_figures(model, images, n: int, steps: int, repeats: int, k: int) -> dict:
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


# -- adaptive Integrated Gradients ------------------------------------------------------

def relative_completeness(result) -> np.ndarray:
  """As beam/attribution.py reports it: error / max(|f(x) - f(b)|, 1e-6)."""
  gap = np.abs(result.prediction - result.baseline_prediction)
  return result.completeness_error / np.maximum(gap, 1e-6)


def p95(result) -> float:
  return float(np.percentile(relative_completeness(result), 95))


def fewest_fixed_steps(run, rule: str, target: float, limit: int = 16384):
  """Fewest points for which fixed-step IG's p95 relative error is <= target.

  Doubling from 8, then bisection to within 1/16 of the answer. The p95 of a
  uniform rule need not fall monotonically with the points (kinks), so this
  is the first crossing that doubling and bisection find. None past limit.
  """
  cache = {}

  def p95_at(steps):
    if steps not in cache:
      cache[steps] = p95(run(steps, rule))
    return cache[steps]
  low, high = 1, 8
  while p95_at(high) > target:
    low, high = high, 2 * high
    if high > limit:
      return None, cache
  while high - low > max(1, high // 16):
    middle = (low + high) // 2
    if middle >= 2 and p95_at(middle) <= target:
      high = middle
    else:
      low = middle
  return high, cache


def adaptive_figures(description: str, run, n: int, tolerance: float, max_steps: int) -> dict:
  """run(steps, rule, **options) -> AttributionResult on the benchmark's n examples."""
  import time  # pylint: disable=g-import-not-at-top
  figures = {'model': description, 'examples': n, 'tolerance': tolerance,
             'max_steps': max_steps, 'adaptive': {}, 'fixed': {}}
  reference = run(4096, 'gauss_legendre').attributions
  scale = np.nanmean(np.abs(reference))
  error = lambda r: float(np.nanmean(np.abs(r.attributions - reference)) / scale)
  for rule in ('trapezoid', 'gauss_legendre'):
    run('auto', rule, tolerance=tolerance, max_steps=max_steps)   # warm-up (tracing)
    start = time.perf_counter()
    result = run('auto', rule, tolerance=tolerance, max_steps=max_steps)
    seconds = time.perf_counter() - start
    figures['adaptive'][rule] = {
        'p95': p95(result), 'max': float(relative_completeness(result).max()),
        'gradient_points': int(result.steps.sum()), 'mean_steps': float(result.steps.mean()),
        'p95_steps': float(np.percentile(result.steps, 95)),
        'max_steps_used': int(result.steps.max()),
        'at_max_steps': int((result.steps > max_steps - 4).sum()), 'seconds': seconds,
        'mean_abs_error_vs_reference': error(result)}
  target = figures['adaptive']['trapezoid']['p95']
  for rule in ('trapezoid', 'gauss_legendre'):
    steps, tried = fewest_fixed_steps(run, rule, target)
    entry = {'steps': steps, 'tried': {str(k): v for k, v in sorted(tried.items())}}
    if steps is not None:
      result = run(steps, rule)
      rows = int(result.steps[0])   # Gauss-Legendre adds x as a point
      start = time.perf_counter()
      run(steps, rule)
      entry.update({'rows_per_example': rows, 'gradient_points': rows * n, 'p95': p95(result),
                    'seconds': time.perf_counter() - start,
                    'mean_abs_error_vs_reference': error(result)})
    figures['fixed'][rule] = entry
  # Fixed steps with adaptive trapezoid's budget, its mean points per example.
  budget = max(2, int(round(figures['adaptive']['trapezoid']['mean_steps'])))
  same_budget = run(budget, 'trapezoid')
  figures['fixed_same_budget'] = {'steps': budget, 'p95': p95(same_budget),
                                  'gradient_points': budget * n,
                                  'mean_abs_error_vs_reference': error(same_budget)}
  found = [e for e in figures['fixed'].values() if e['steps'] is not None]
  best = min(found, key=lambda e: e['gradient_points']) if found else None
  adaptive = figures['adaptive']['trapezoid']
  figures['fixed_best_rule'] = next((r for r, e in figures['fixed'].items() if e is best), None)
  figures['adaptive_vs_fixed_points'] = (adaptive['gradient_points'] / best['gradient_points']
                                         if best else 0.0)
  return figures


def tabular_adaptive(spec: common.TabularModel, n: int, tolerance: float, max_steps: int):
  rng = np.random.default_rng(1)
  features = spec.take(rng.choice(len(spec.labels), size=n, replace=n > len(spec.labels)))
  model_fn = KerasModelFunction(spec.model)
  reference = ReferenceStats.from_features(
      {name: spec.features[name] for name in model_fn.input_names}, model_fn.input_dtypes)

  def run(steps, rule, **options):
    # The float path alone (string inputs held at x), as in the throughput figures.
    method = IntegratedGradients(steps=steps, baseline='mean', rule=rule, discrete='skip',
                                 **options)
    return method.attribute(model_fn, features, reference, 'predicted')
  return adaptive_figures(spec.description, run, n, tolerance, max_steps)


def digits_adaptive(model, images, tolerance: float, max_steps: int):
  image_model = ImageModel(model)

  def run(steps, rule, **options):
    method = ImageIntegratedGradients(steps=steps, baseline='black', rule=rule, **options)
    return method.attribute(image_model, images)
  return adaptive_figures('digits CNN (8x8x1 input, conv 16-32, 10 classes)', run, len(images),
                          tolerance, max_steps)


# -- Expected Gradients ---------------------------------------------------------------------

def exact_expected_gradients(model_fn, matrix, background, others, targets, steps: int):
  """Integrated Gradients against every background row ([N, B] paths), averaged."""
  n, b = len(matrix), len(background)
  alphas, weights = np.polynomial.legendre.leggauss(steps)
  alphas, weights = (alphas + 1) / 2, weights / 2
  total = np.zeros(matrix.shape, np.float64)
  for i in range(n):   # one example's B paths per call keeps memory small
    x = np.repeat(matrix[i:i + 1], b, axis=0)
    _, grads, _, _ = model_fn.path_gradients(x, background, alphas, weights,
                                             [np.repeat(o[i:i + 1], b) for o in others],
                                             np.full(b, targets[i], np.int32))
    total[i] = ((x - background).astype(np.float64) * grads).mean(axis=0)
  return total


def design_estimate(model_fn, matrix, background, others, targets, design):
  """A (baseline, alpha, weight) design per example through the model's gradient call."""
  n = len(matrix)
  rows, alphas, weights = (np.stack(v) for v in zip(*(design(i) for i in range(n))))
  s = rows.shape[1]
  example_of = np.repeat(np.arange(n), s)
  baselines = background[rows.reshape(-1)].astype(np.float64)
  delta = matrix[example_of].astype(np.float64) - baselines
  points = (baselines + alphas.reshape(-1, 1) * delta).astype(np.float32)
  _, grads = model_fn.target_gradients(points, [o[example_of] for o in others],
                                       np.repeat(targets, s))
  return np.einsum('ns,nsf->nf', weights, (delta * grads).reshape(n, s, -1))


def independent_draws(num_samples, background_size, rng):
  """Erion's estimator (shap's): a background row and an alpha drawn anew each time."""
  return (rng.integers(0, background_size, num_samples), rng.uniform(size=num_samples),
          np.full(num_samples, 1.0 / num_samples))


def gauss_legendre_draws(num_samples, background_size, rng, points=4):
  """num_samples / points distinct rows, each integrated with `points` Gauss-Legendre alphas."""
  rows = min(background_size, max(1, num_samples // points))
  nodes, weights = np.polynomial.legendre.leggauss(num_samples // rows)
  picked = rng.permutation(background_size)[:rows]
  return (np.repeat(picked, len(nodes)), np.tile((nodes + 1) / 2, rows),
          np.tile(weights / 2, rows) / rows)


def eg_figures(description, model_fn, features, background, twin, to_twin, num_samples, seeds,
               reference_steps) -> dict:
  """Expected Gradients: estimators against the exact expectation, engine vs shap."""
  import shap  # pylint: disable=g-import-not-at-top
  names = model_fn.input_names
  b = len(next(iter(background.values())))
  reference = ReferenceStats.from_features(background, model_fn.input_dtypes, background_size=b)
  # The same rows for every estimator, in the order the reference keeps them.
  assert all(np.array_equal(np.sort(reference.background[k]), np.sort(background[k]))
             for k in names)
  background = {k: reference.background[k] for k in names}
  matrix, others = model_fn.split(features)
  bg_matrix, _ = model_fn.split(background)
  n = len(matrix)
  engine = lambda seed: ExpectedGradients(num_samples=num_samples, background_size=b,
                                          seed=seed).attribute(model_fn, features, reference)
  first = engine(0)
  targets = first.target.astype(np.int32)
  exact = exact_expected_gradients(model_fn, matrix, bg_matrix, others, targets,
                                   reference_steps)
  scale = np.abs(exact).mean()
  rel_error = lambda estimate: float(np.abs(estimate - exact).mean() / scale)

  def over_seeds(estimates):
    errors = [rel_error(e) for e in estimates]
    return {'mean_abs_error': float(np.mean(errors)),
            'mean_abs_error_standard_error': float(np.std(errors, ddof=1) / np.sqrt(len(errors)))}

  runs = [first] + [engine(seed) for seed in range(1, seeds)]
  spread = np.stack([r.attributions for r in runs]).std(axis=0, ddof=1).mean()
  figures = {'model': description, 'examples': n, 'background_size': b,
             'num_samples': num_samples, 'seeds': seeds, 'reference_steps': reference_steps,
             'engine': over_seeds([r.attributions for r in runs]),
             'standard_error_vs_spread': float(np.stack([r.standard_errors for r in runs]).mean()
                                               / spread)}
  for key, draws in (('independent', independent_draws),
                     ('gauss_legendre_4', gauss_legendre_draws)):
    figures[key] = over_seeds([design_estimate(
        model_fn, matrix, bg_matrix, others, targets,
        lambda i, seed=seed: draws(num_samples, b, np.random.default_rng([seed, i])))
        for seed in range(seeds)])
  x_twin, bg_twin = to_twin(features), to_twin(background)
  explainer = shap.GradientExplainer(twin, bg_twin, batch_size=num_samples)

  def run_shap(seed=0):
    values, ranked = explainer.shap_values(x_twin, nsamples=num_samples, ranked_outputs=1,
                                           output_rank_order='max', rseed=seed)
    return np.asarray(values[0] if isinstance(values, list) else values[..., 0]).reshape(
        n, -1).astype(np.float64), np.asarray(ranked)[:, 0]
  shap_runs = [run_shap(seed) for seed in range(seeds)]
  assert all((ranked == targets).all() for _, ranked in shap_runs), 'same explained class'
  figures['shap'] = over_seeds([values for values, _ in shap_runs])
  engine_s, shap_s = common.timed_alternating([lambda: engine(0), run_shap], 2)
  figures.update({'engine_examples_per_s': n / engine_s, 'shap_examples_per_s': n / shap_s,
                  'engine_vs_shap_speed': shap_s / engine_s,
                  'engine_vs_shap_error': (figures['engine']['mean_abs_error'] /
                                           figures['shap']['mean_abs_error'])})
  return figures


def wide_eg(spec: common.TabularModel, n: int, background_size: int, num_samples: int,
            seeds: int):
  rows = np.random.default_rng(2).permutation(len(spec.labels))
  model_fn = KerasModelFunction(spec.model)
  return eg_figures(spec.description, model_fn, spec.take(rows[:n]),
                    spec.take(rows[n:n + background_size]), spec.twin, spec.to_twin,
                    num_samples, seeds, 256)


def digits_eg(model, images, n: int, background_size: int, num_samples: int, seeds: int):
  import tf_keras  # pylint: disable=g-import-not-at-top
  # The CNN behind one flat 64-pixel input: the engine attributes 64 float features.
  shape = images.shape[1:]
  flat_input = tf_keras.Input((int(np.prod(shape)),), name='pixels')
  flat = tf_keras.Model(flat_input, model(tf_keras.layers.Reshape(shape)(flat_input)))
  model_fn = KerasModelFunction(flat)
  rows = np.random.default_rng(2).permutation(len(images))
  columns = lambda take: {name: images[take].reshape(len(take), -1)[:, j]
                          for j, name in enumerate(model_fn.input_names)}
  to_images = lambda features: np.stack([features[name] for name in model_fn.input_names],
                                        axis=1).reshape((-1,) + shape).astype(np.float32)
  return eg_figures('digits CNN (8x8x1 input, conv 16-32, 10 classes)', model_fn,
                    columns(rows[:n]), columns(rows[n:n + background_size]), model, to_images,
                    num_samples, seeds, 128)


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
  parser.add_argument('--adaptive-examples', type=int, default=256,
                      help='tabular examples for adaptive IG (images: --image-examples)')
  parser.add_argument('--max-steps', type=int, default=1024, help='adaptive IG budget per example')
  parser.add_argument('--eg-examples', type=int, default=32)
  parser.add_argument('--eg-background', type=int, default=100)
  parser.add_argument('--eg-samples', type=int, default=200, help='gradient rows per example')
  parser.add_argument('--eg-seeds', type=int, default=4)
  parser.add_argument('--skip', nargs='*', default=[], choices=['throughput', 'adaptive', 'eg'])
  parser.add_argument('--out', default=os.path.join(common.RESULTS_DIR, 'ig_throughput.json'))
  args = parser.parse_args(argv)

  specs = [common.penguin_model(), common.wide_model()]
  digits, images, _ = common.digits_model()
  figures = {'machine': common.machine(), 'models': {}, 'adaptive': {}, 'expected_gradients': {}}
  if 'throughput' not in args.skip:
    for spec in specs:
      figures['models'][spec.name] = tabular_figures(spec, args.examples, args.steps,
                                                     args.repeats, args.reference_examples)
    figures['models']['digits'] = digits_figures(
        digits, images, args.image_examples, args.steps, max(4, args.repeats // 2),
        min(args.reference_examples, args.image_examples))
  if 'adaptive' not in args.skip:
    for spec in specs:
      figures['adaptive'][spec.name] = tabular_adaptive(spec, args.adaptive_examples, TOLERANCE,
                                                        args.max_steps)
    figures['adaptive']['digits'] = digits_adaptive(digits, images[:args.image_examples],
                                                    TOLERANCE, args.max_steps)
  if 'eg' not in args.skip:
    figures['expected_gradients']['wide'] = wide_eg(specs[1], args.eg_examples,
                                                    args.eg_background, args.eg_samples,
                                                    args.eg_seeds)
    figures['expected_gradients']['digits'] = digits_eg(digits, images, args.eg_examples // 2,
                                                        args.eg_background, args.eg_samples,
                                                        args.eg_seeds)
  figures['headline'] = headline(figures)
  common.write_results(args.out, figures, markdown_table(figures))
  return figures


def headline(figures: dict) -> list:
  rows = []
  for name, m in figures['models'].items():
    rows.append({'figure': f'IG engine ÷ limit ({name})', 'value': m['engine_vs_limit'],
                 'target': TARGET_VS_LIMIT, 'pass': m['engine_vs_limit'] >= TARGET_VS_LIMIT})
    for key, label in (('saliency', 'PAIR saliency'), ('shap_gradient', 'shap GradientExplainer')):
      value = m[f'engine_vs_{key}']
      rows.append({'figure': f'IG engine ÷ {label} ({name})', 'value': value,
                   'target': TARGET_VS_REFERENCES, 'pass': value >= TARGET_VS_REFERENCES})
  for name, m in figures['adaptive'].items():
    adaptive = m['adaptive']['trapezoid']
    rows.append({'figure': f'Adaptive IG p95 relative completeness error, x1000 ({name})',
                 'value': 1000 * adaptive['p95'], 'target': 1000 * TARGET_ADAPTIVE_P95,
                 'pass': adaptive['p95'] <= TARGET_ADAPTIVE_P95, 'lower_is_better': True,
                 'note': f"tolerance {m['tolerance']:g}"})
    fixed = m['fixed'].get(m['fixed_best_rule'] or '', {})
    value = m['adaptive_vs_fixed_points']
    rows.append({'figure': f'Adaptive IG gradient points ÷ fixed-step IG at the same p95 ({name})',
                 'value': value, 'target': TARGET_ADAPTIVE_VS_FIXED,
                 'pass': bool(fixed) and value <= TARGET_ADAPTIVE_VS_FIXED,
                 'lower_is_better': True,
                 'note': (f"{adaptive['mean_steps']:.0f} points per example on average vs "
                          f"{fixed['rows_per_example']} ({m['fixed_best_rule']})" if fixed else
                          'fixed steps did not reach it by 16384')})
  for name, m in figures['expected_gradients'].items():
    rows.append({'figure': f'Expected Gradients mean abs error vs exact, engine ÷ shap '
                           f'GradientExplainer ({name})',
                 'value': m['engine_vs_shap_error'], 'target': TARGET_EG_ERROR_VS_SHAP,
                 'pass': m['engine_vs_shap_error'] <= TARGET_EG_ERROR_VS_SHAP,
                 'lower_is_better': True,
                 'note': f"{m['num_samples']} gradient rows per example each"})
    rows.append({'figure': f'Expected Gradients engine ÷ shap GradientExplainer, speed ({name})',
                 'value': m['engine_vs_shap_speed'], 'target': TARGET_VS_REFERENCES,
                 'pass': m['engine_vs_shap_speed'] >= TARGET_VS_REFERENCES})
  return rows


def markdown_table(figures: dict) -> str:
  lines = [f"Integrated Gradients throughput; {common.machine_text(figures['machine'])}.", '']
  if figures['models']:
    lines += ['| model | steps | engine ex/s | limit ex/s | engine ÷ limit | saliency ex/s | '
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
              'Largest difference between saliency\'s and the engine\'s attributions, relative '
              'to the largest attribution: ' + ', '.join(
                  f"{name} {m['saliency_vs_engine_max_relative_difference']:.1e}"
                  for name, m in figures['models'].items()) + '.', '']
  if figures['adaptive']:
    lines += ['Adaptive Integrated Gradients (steps=\'auto\', tolerance '
              f"{TOLERANCE:g}) against fixed steps at the same p95 relative completeness error.",
              '',
              '| model | examples | rule | p95 rel. error | '
              'points per example (mean / p95 / max) | '
              'gradient points | error vs 4096-pt IG | s |',
              '|---|---:|---|---:|---:|---:|---:|---:|']
    for m in figures['adaptive'].values():
      for rule, a in m['adaptive'].items():
        lines.append(f"| {m['model']} | {m['examples']} | auto, {rule} | {a['p95']:.1e} | "
                     f"{a['mean_steps']:.0f} / {a['p95_steps']:.0f} / {a['max_steps_used']} | "
                     f"{a['gradient_points']:,} | {a['mean_abs_error_vs_reference']:.1e} | "
                     f"{a['seconds']:.2f} |")
      for rule, f in m['fixed'].items():
        if f['steps'] is None:
          lines.append(f"| {m['model']} | {m['examples']} | fixed, {rule} | — | > 16384 | — "
                       '| — | — |')
          continue
        lines.append(f"| {m['model']} | {m['examples']} | fixed, {rule} | {f['p95']:.1e} | "
                     f"{f['rows_per_example']} | {f['gradient_points']:,} | "
                     f"{f['mean_abs_error_vs_reference']:.1e} | {f['seconds']:.2f} |")
      b = m['fixed_same_budget']
      lines.append(f"| {m['model']} | {m['examples']} | fixed, trapezoid, adaptive's budget | "
                   f"{b['p95']:.1e} | {b['steps']} | {b['gradient_points']:,} | "
                   f"{b['mean_abs_error_vs_reference']:.1e} | — |")
    lines += ['', 'Fixed steps: the fewest (doubling from 8, then bisection to 1/16) whose p95 is '
              'at most adaptive trapezoid\'s. Gradient points: all points evaluated for all '
              'examples (Gauss-Legendre adds x itself as a point; adaptive Gauss-Legendre also '
              'evaluates outputs at interval ends). Error: mean absolute difference from '
              '4096-point Gauss-Legendre IG, relative to its mean absolute attribution: '
              'completeness '
              'is a check of the sum, whose intervals\' errors may cancel, so at the same p95 '
              'adaptive IG\'s attributions are further from the reference than fixed steps\', '
              'and closer at the same budget (the last row of each model). '
              f"Targets: p95 <= {TARGET_ADAPTIVE_P95:g}, adaptive ÷ fixed points <= "
              f"{TARGET_ADAPTIVE_VS_FIXED:g}.", '']
  if figures['expected_gradients']:
    lines += ['Expected Gradients at equal gradient rows per example: mean absolute error against '
              'the exact expectation, relative to its mean absolute attribution (± standard error '
              'over seeds).', '',
              '| model | examples | background | rows per example | engine | independent draws | '
              '4 Gauss-Legendre alphas per baseline | shap GradientExplainer | engine ÷ shap, '
              'error | engine ex/s | shap ex/s | engine ÷ shap, speed | standard error ÷ '
              'spread |',
              '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    cell = lambda e: f"{e['mean_abs_error']:.3f} ± {e['mean_abs_error_standard_error']:.3f}"
    for m in figures['expected_gradients'].values():
      lines.append(f"| {m['model']} | {m['examples']} | {m['background_size']} | "
                   f"{m['num_samples']} | {cell(m['engine'])} | {cell(m['independent'])} | "
                   f"{cell(m['gauss_legendre_4'])} | {cell(m['shap'])} | "
                   f"{m['engine_vs_shap_error']:.2f} | {m['engine_examples_per_s']:,.1f} | "
                   f"{m['shap_examples_per_s']:,.1f} | {m['engine_vs_shap_speed']:.1f} | "
                   f"{m['standard_error_vs_spread']:.2f} |")
    lines += ['', 'Exact: Gauss-Legendre Integrated Gradients (256 points, digits 128) against '
              'every background row, averaged. Independent draws (Erion\'s estimator, shap\'s) '
              'and 4 Gauss-Legendre alphas per baseline run through the engine\'s model. shap '
              'runs on the same layers behind one float input, nsamples = rows per example, '
              'batch_size the same. Standard error ÷ spread: the engine\'s mean reported '
              'standard error over the spread of its estimates across seeds. Targets: error '
              f"ratio <= {TARGET_EG_ERROR_VS_SHAP:g}, speed ratio >= {TARGET_VS_REFERENCES:g}."]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main(sys.argv[1:])
