"""Kernel SHAP: our engine vs shap.KernelExplainer, error against exact Shapley values and speed.

Both get the same model and the same background rows. shap runs with
l1_reg=False (the engine does no feature selection either, and selection
only adds time) and is given our own compiled, batched predict function, so
a coalition costs the same model rows in both. For context we also time shap
with Keras `model.predict`, the way its documentation calls it.

Three comparisons per model:
  equal budget   the same coalitions per example (below 2^F - 2, so both
                 sample): speed, and mean absolute error against exact values;
  floor          one batched predict over every (example, coalition,
                 background) row of that budget, prebuilt: at equal budget no
                 implementation passes it;
  time to error  the smallest engine budget whose mean error is at most
                 shap's at 2048 coalitions, timed against shap at 2048.

Exact values: brute-force interventional Shapley values over the same
background from all 2^F coalitions, computed here independently of the
engine; for the 100-input model, the engine at a far larger budget (its own
standard error is reported).

    python benchmarks/kernel_shap.py [--out results/kernel_shap.json]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-order
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from tfx_explain import KernelShap  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.adapters import KerasModelFunction  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top
from tfx_explain.engine.shapley import kernel_coalitions  # pylint: disable=g-import-not-at-top

TARGET_SPEEDUP = 20.0
TARGET_ERROR_RATIO = 0.5
SHAP_REFERENCE_BUDGET = 2048
ENGINE_SEEDS_PER_SHAP_SEED = 4


def as_table(features, names) -> np.ndarray:
  """Columns -> one [N, F] array, object-typed when any column holds strings (as shap takes it)."""
  columns = [np.asarray(features[name]) for name in names]
  if any(c.dtype.kind in 'SO' for c in columns):
    return np.stack([c.astype(object) for c in columns], axis=1)
  return np.stack(columns, axis=1).astype(np.float32)


def exact_shapley(model_fn, x_table, background_table, targets, names, chunk_rows=1 << 18):
  """Interventional Shapley values of each example's target output, from all 2^F coalitions."""
  n, f = x_table.shape
  b = len(background_table)
  num_masks = 2 ** f
  bits = (np.arange(num_masks)[:, None] >> np.arange(f)[None, :]) & 1   # [2^F, F]
  values = np.zeros((n, num_masks))
  masks_per_call = max(1, chunk_rows // (n * b))
  for start in range(0, num_masks, masks_per_call):
    keep = bits[start:start + masks_per_call].astype(bool)            # [S, F]
    rows = np.where(keep[None, :, None, :], x_table[:, None, None, :],
                    background_table[None, None, :, :])               # [N, S, B, F]
    flat = rows.reshape(-1, f)
    outputs = model_fn.predict({name: flat[:, j] for j, name in enumerate(names)})
    chosen = outputs.reshape(n, keep.shape[0], b, -1)[np.arange(n), :, :, targets]
    values[:, start:start + keep.shape[0]] = chosen.mean(axis=2)
  sizes = bits.sum(axis=1)
  weights = np.array([math.factorial(s) * math.factorial(f - s - 1) / math.factorial(f)
                      if s < f else 0.0 for s in sizes])
  phi = np.zeros((n, f))
  for j in range(f):
    without = np.nonzero(bits[:, j] == 0)[0]
    gains = values[:, without | (1 << j)] - values[:, without]
    phi[:, j] = (gains * weights[without]).sum(axis=1)
  return phi


def errors(estimate, exact) -> dict:
  diff = np.abs(estimate - exact)
  return {'max_abs_error': float(diff.max()), 'mean_abs_error': float(diff.mean()),
          'relative_mean_abs_error': float(diff.mean() / np.abs(exact).mean())}


def shap_values_for_targets(values, targets) -> np.ndarray:
  """shap's [N, F, K] (or list of K [N, F]) -> [N, F] for each example's target."""
  if isinstance(values, list):
    values = np.stack(values, axis=-1)
  values = np.asarray(values, np.float64)
  if values.ndim == 2:
    return values
  return values[np.arange(len(targets)), :, targets]


def shap_explainer(model_fn, names, background_table):
  import shap  # pylint: disable=g-import-not-at-top

  def shap_predict(table):
    return model_fn.predict({name: table[:, j] for j, name in enumerate(names)})

  return shap.KernelExplainer(shap_predict, background_table)


def run_shap(explainer, x_table, budget, seed=0):
  np.random.seed(seed)
  return explainer.shap_values(x_table, nsamples=budget, l1_reg=False, silent=True)


def engine_method(budget, background_size, seed=0, **options):
  return KernelShap(num_samples=budget, background_size=background_size, seed=seed, **options)


def engine_errors(model_fn, examples, reference, exact, budget, background_size, seeds,
                  **options) -> dict:
  return average_errors([errors(engine_method(budget, background_size, seed, **options).attribute(
      model_fn, examples, reference, 'predicted').attributions, exact) for seed in range(seeds)])


def shap_errors(explainer, x_table, targets, exact, budget, seeds) -> dict:
  return average_errors([errors(shap_values_for_targets(
      run_shap(explainer, x_table, budget, seed), targets), exact) for seed in range(seeds)])


# Budgets the time-to-error search tries, smallest first.
SEARCH_BUDGETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
                  4096)


def model_figures(spec: common.TabularModel, n: int, background_size: int, num_samples: int,
                  repeats: int, seeds: int, keras_predict_examples: int = 0,
                  reference_budget: int = 0, variants: bool = False) -> dict:
  """Speed and error at equal budget, and the time each takes to reach shap's error at 2048.

  Errors are against exact Shapley values (all 2^F coalitions), or for a model
  too wide for them against the engine at reference_budget coalitions, whose
  own standard error is reported beside it.
  """
  model_fn = KerasModelFunction(spec.model)
  names = model_fn.input_names   # the engine's column order
  rng = np.random.default_rng(0)
  rows = rng.permutation(len(spec.labels))
  examples, background = spec.take(rows[:n]), spec.take(rows[n:n + background_size])
  # Exactly these background rows, in this order, for both implementations.
  reference = ReferenceStats.from_features(background, model_fn.input_dtypes,
                                           background_size=background_size)
  assert all(np.array_equal(np.sort(reference.background[k]), np.sort(background[k]))
             for k in names)
  background = {k: reference.background[k] for k in names}
  method = engine_method(num_samples, background_size)
  x_table, background_table = as_table(examples, names), as_table(background, names)
  explainer = shap_explainer(model_fn, names, background_table)
  run_engine = lambda: method.attribute(model_fn, examples, reference, 'predicted')

  # The floor: every row the estimate evaluates, prebuilt, in one batched pass.
  masks, _, exact_budget = kernel_coalitions(len(names), num_samples, 0)
  assert not exact_budget, 'the budget must be below 2^F - 2 so both implementations sample'
  floor_rows = np.where(masks[None, :, None, :], x_table[:, None, None, :],
                        background_table[None, None, :, :]).reshape(-1, len(names))
  floor_columns = {name: floor_rows[:, j] for j, name in enumerate(names)}
  floor_matrix, floor_others = model_fn.split(floor_columns)
  floor_others = [tf.constant(column) for column in floor_others]
  run_floor = lambda: model_fn.predict_split(floor_matrix, floor_others)

  floor_s, engine_s, shap_s = common.timed_alternating(
      [run_floor, run_engine, lambda: run_shap(explainer, x_table, num_samples)], repeats)
  result = run_engine()
  targets = result.target
  figures = {
      'model': spec.description, 'features': len(names), 'examples': n,
      'background_size': background_size, 'num_samples': num_samples,
      'coalitions': int(result.extras['coalitions']),
      'interactions': int(result.extras['interactions']),
      'model_rows_per_example': int(result.extras['coalitions']) * background_size,
      'engine_examples_per_s': n / engine_s, 'shap_examples_per_s': n / shap_s,
      'floor_examples_per_s': n / floor_s,
      'engine_vs_shap': shap_s / engine_s, 'floor_vs_shap': shap_s / floor_s,
      'engine_vs_floor': floor_s / engine_s,
  }
  if keras_predict_examples:
    # shap as its documentation calls it: Keras predict (batches of 32 rows).
    import shap  # pylint: disable=g-import-not-at-top
    k = min(n, keras_predict_examples)
    keras_explainer = shap.KernelExplainer(
        lambda table: spec.model.predict(
            {name: table[:, j:j + 1].astype(np.float32 if name in spec.float_names else bytes)
             for j, name in enumerate(names)}, verbose=0), background_table)
    keras_s = common.timed(lambda: keras_explainer.shap_values(
        x_table[:k], nsamples=num_samples, l1_reg=False, silent=True), 1)
    figures['shap_keras_predict_examples_per_s'] = k / keras_s
    figures['engine_vs_shap_keras_predict'] = figures['engine_examples_per_s'] * keras_s / k
  if not seeds:
    return figures

  # -- errors: exact values, or a far larger budget of the engine --------------------
  if reference_budget:
    truth = engine_method(reference_budget, background_size, seed=12345, interactions=1
                          ).attribute(model_fn, examples, reference, 'predicted')
    exact = truth.attributions
    figures['reference'] = {'coalitions': reference_budget,
                            'mean_standard_error': float(truth.standard_errors.mean())}
  else:
    exact = exact_shapley(model_fn, x_table, background_table, targets, names)
    figures['reference'] = {'coalitions': 2 ** len(names), 'mean_standard_error': 0.0}
  # shap draws new coalitions for every example, the engine one design per seed for
  # all examples (results must not depend on batching): the engine's average needs
  # more seeds to be as precise; it is also the cheaper run.
  engine_seeds = ENGINE_SEEDS_PER_SHAP_SEED * seeds
  figures['engine_seeds'], figures['shap_seeds'] = engine_seeds, seeds
  figures['engine'] = engine_errors(model_fn, examples, reference, exact, num_samples,
                                    background_size, engine_seeds)
  figures['shap'] = shap_errors(explainer, x_table, targets, exact, num_samples, seeds)
  if variants:
    # The sampler, pairing and interaction order at the same budget: what chose the defaults.
    figures['variants'] = {
        f'{sampler}, {"paired" if paired else "unpaired"}, order {order}': engine_errors(
            model_fn, examples, reference, exact, num_samples, background_size, engine_seeds,
            sampler=sampler, paired=paired, interactions=order)['mean_abs_error']
        for sampler in ('leverage', 'kernel') for paired in (True, False) for order in (1, 3)
        if order == 1 or paired}
  # -- time to shap's error at 2048 coalitions -------------------------------------------
  target = shap_errors(explainer, x_table, targets, exact, SHAP_REFERENCE_BUDGET, seeds)
  everything = 2 ** len(names) - 2 if len(names) < 40 else None
  budget = None
  for candidate in SEARCH_BUDGETS:
    candidate = min(candidate, everything) if everything else candidate
    found = engine_errors(model_fn, examples, reference, exact, candidate, background_size,
                          engine_seeds)
    if found['mean_abs_error'] <= target['mean_abs_error'] + 1e-9:
      budget = candidate
      break
    if everything and candidate >= everything:
      break
  time_to = {'shap_budget': SHAP_REFERENCE_BUDGET, 'shap_error': target['mean_abs_error'],
             'engine_budget': budget}
  if budget is not None:
    ours = engine_method(budget, background_size)
    engine_s, shap_s = common.timed_alternating(
        [lambda: ours.attribute(model_fn, examples, reference, 'predicted'),
         lambda: run_shap(explainer, x_table, SHAP_REFERENCE_BUDGET)], max(1, repeats - 1))
    time_to.update(engine_error=found['mean_abs_error'], engine_seconds=engine_s,
                   shap_seconds=shap_s, speedup=shap_s / engine_s)
  figures['time_to_shap_error'] = time_to
  return figures


def average_errors(per_seed) -> dict:
  means = np.asarray([e['mean_abs_error'] for e in per_seed])
  return {'max_abs_error': max(e['max_abs_error'] for e in per_seed),
          'mean_abs_error': float(means.mean()),
          'mean_abs_error_standard_error': float(means.std(ddof=1) / np.sqrt(len(means))),
          'relative_mean_abs_error': float(np.mean([e['relative_mean_abs_error']
                                                    for e in per_seed]))}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--examples', type=int, default=32)
  parser.add_argument('--background', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--seeds', type=int, default=4,
                      help='shap seeds the errors are averaged over (the engine gets '
                           f'{ENGINE_SEEDS_PER_SHAP_SEED}x as many)')
  parser.add_argument('--wide-examples', type=int, default=6)
  parser.add_argument('--wide-background', type=int, default=20)
  parser.add_argument('--wide-reference-budget', type=int, default=65536)
  parser.add_argument('--out', default=os.path.join(common.RESULTS_DIR, 'kernel_shap.json'))
  args = parser.parse_args(argv)
  models = {
      # 6 inputs: 62 coalitions; a budget of 32 samples about half of them.
      'penguin': model_figures(common.penguin_model(), args.examples, args.background, 32,
                               args.repeats, args.seeds, keras_predict_examples=4),
      # 12 inputs: 4094 coalitions; 512 sampled.
      'mlp12': model_figures(common.small_mlp(12), args.examples, args.background, 512,
                             args.repeats, args.seeds, variants=True),
      # 100 inputs: exact values are out of reach; the engine at 64k coalitions stands in.
      'wide': model_figures(common.wide_model(), args.wide_examples, args.wide_background, 2048,
                            max(1, args.repeats - 1), args.seeds,
                            reference_budget=args.wide_reference_budget),
  }
  figures = {'machine': common.machine(), 'models': models}
  figures['headline'] = headline(models)
  common.write_results(args.out, figures, markdown_table(figures))
  return figures


def headline(models: dict) -> list:
  rows = []
  for name, m in models.items():
    rows.append({'figure': f'Kernel SHAP engine ÷ shap.KernelExplainer, equal budget ({name})',
                 'value': m['engine_vs_shap'], 'target': None, 'pass': None,
                 'note': f"{m['num_samples']} coalitions; the floor (model rows alone) is "
                         f"{m['floor_vs_shap']:.1f}x shap"})
    if 'engine' in m and name != 'wide':
      ratio = m['engine']['mean_abs_error'] / m['shap']['mean_abs_error']
      rows.append({'figure': f'Kernel SHAP mean abs error, engine ÷ shap, equal budget ({name})',
                   'value': ratio, 'target': TARGET_ERROR_RATIO,
                   'pass': ratio <= TARGET_ERROR_RATIO, 'lower_is_better': True,
                   'note': f"{m['num_samples']} coalitions, against exact Shapley values"})
    time_to = m.get('time_to_shap_error')
    if time_to:
      speedup = time_to.get('speedup')
      rows.append({
          'figure': f"Kernel SHAP time to shap's error at {time_to['shap_budget']} coalitions, "
                    f'shap ÷ engine ({name})',
          'value': speedup if speedup is not None else float('nan'), 'target': TARGET_SPEEDUP,
          'pass': speedup is not None and speedup >= TARGET_SPEEDUP,
          'note': (f"engine needs {time_to['engine_budget']} coalitions"
                   if time_to['engine_budget'] else 'engine never reached it')})
  return rows


def markdown_table(figures: dict) -> str:
  models = figures['models']
  lines = [f"Kernel SHAP vs shap.KernelExplainer; {common.machine_text(figures['machine'])}.", '',
           'Equal budget (same coalitions per example, same background):', '',
           '| model | F | budget | background | engine ex/s | shap ex/s | engine ÷ shap | '
           'floor ÷ shap | mean abs error, engine | mean abs error, shap | engine ÷ shap error |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for m in models.values():
    cells = ['—', '—', '—']
    if 'engine' in m:
      cells = [f"{m[who]['mean_abs_error']:.3e} ± {m[who]['mean_abs_error_standard_error']:.0e}"
               for who in ('engine', 'shap')]
      cells.append(f"{m['engine']['mean_abs_error'] / m['shap']['mean_abs_error']:.2f}")
    lines.append(
        f"| {m['model']} | {m['features']} | {m['num_samples']} | {m['background_size']} | "
        f"{m['engine_examples_per_s']:,.1f} | {m['shap_examples_per_s']:,.1f} | "
        f"{m['engine_vs_shap']:.1f} | {m['floor_vs_shap']:.1f} | {' | '.join(cells)} |")
  lines += ['', f"Time to reach shap's mean error at {SHAP_REFERENCE_BUDGET} coalitions:", '',
            '| model | shap error | engine coalitions | engine error | shap s | engine s | '
            'shap ÷ engine |', '|---|---:|---:|---:|---:|---:|---:|']
  for m in models.values():
    t = m.get('time_to_shap_error')
    if not t:
      continue
    if t.get('speedup') is None:
      lines.append(f"| {m['model']} | {t['shap_error']:.2e} | not reached | — | — | — | — |")
      continue
    lines.append(f"| {m['model']} | {t['shap_error']:.2e} | {t['engine_budget']} | "
                 f"{t['engine_error']:.2e} | {t['shap_seconds']:.3f} | {t['engine_seconds']:.4f} | "
                 f"{t['speedup']:.1f} |")
  variants = next((m['variants'] for m in models.values() if 'variants' in m), None)
  if variants:
    name = next(m['model'] for m in models.values() if 'variants' in m)
    budget = next(m['num_samples'] for m in models.values() if 'variants' in m)
    lines += ['', f'Estimator variants at {budget} coalitions on the {name} (mean abs error; '
              'the default is leverage, paired, order chosen by budget):', '',
              '| sampler, pairing, interaction order | mean abs error |', '|---|---:|']
    lines += [f'| {k} | {v:.3e} |' for k, v in variants.items()]
  seeds = next(((m['engine_seeds'], m['shap_seeds']) for m in models.values()
                if 'engine_seeds' in m), (0, 0))
  wide = models.get('wide', {}).get('reference')
  lines += ['', 'Targets: engine error <= 0.5x shap\'s at equal budget (penguin, mlp12); time to '
            f"reach shap's error at {SHAP_REFERENCE_BUDGET} coalitions at least 20x shorter. "
            'Floor = one batched predict over the same model rows, prebuilt: at equal budget no '
            'implementation passes it. Errors are the mean absolute error for the explained '
            f'class, averaged over {seeds[0]} seeds for the engine (one design per seed, shared '
            f'by all examples) and {seeds[1]} for shap (new draws per example); ± is the '
            'standard error over seeds. Reference values: exact Shapley values from all 2^F '
            'coalitions'
            + (f"; for the wide model the engine at {wide['coalitions']:,} coalitions (mean "
               f"standard error {wide['mean_standard_error']:.1e})" if wide else '') + '.']
  keras = [(name, m) for name, m in models.items() if 'engine_vs_shap_keras_predict' in m]
  for name, m in keras:
    lines += ['', f"With Keras `model.predict` as its model function (as in shap's examples), "
                 f"shap explains {m['shap_keras_predict_examples_per_s']:.1f} examples/s on the "
                 f"{name} model: engine ÷ that = {m['engine_vs_shap_keras_predict']:.0f}."]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main(sys.argv[1:])
