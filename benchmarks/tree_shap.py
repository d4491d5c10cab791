"""Tree SHAP: our numpy engine against shap's TreeExplainer (C++) on the same trees.

Both are exact, so equal error is a given (checked: the largest difference is
reported); the figure is time. A scikit-learn random forest is read into
our Forest node for node (as tests/test_tree_shap.py does) and shap reads the
sklearn model natively. Continuous features (shap compares in float32; tied
values would make its interventional values differ from the exact game).

  path-dependent   N examples, no background
  interventional   N examples against R background rows

Ratios are shap's seconds ÷ ours, fastest of a few alternating repeats.

    python benchmarks/tree_shap.py [--out results/tree_shap.json]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # pylint: disable=g-import-not-at-top,wrong-import-position

CASES = (
    # name, trees, max depth, features, examples, background rows
    ('rf50-d6', 50, 6, 8, 1000, 100),
    ('rf100-d10', 100, 10, 8, 500, 50),
)
REPEATS = 3


def case_figures(name, num_trees, depth, num_features, n, r) -> dict:
  import shap  # pylint: disable=g-import-not-at-top
  from sklearn.ensemble import RandomForestRegressor  # pylint: disable=g-import-not-at-top
  from tfx_explain.engine import trees  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4000, num_features)).astype(np.float32).astype(np.float64)
  y = 2 * x[:, 0] + x[:, 1] * x[:, 2] + np.sin(3 * x[:, 3]) + 0.1 * rng.normal(size=len(x))
  model = RandomForestRegressor(n_estimators=num_trees, max_depth=depth, random_state=0,
                                n_jobs=1).fit(x, y)
  forest = trees.forest_from_sklearn(model, [f'x{i}' for i in range(num_features)])
  rows, background = x[:n], x[-r:]
  targets = np.zeros(n, np.int64)
  path_explainer = shap.TreeExplainer(model, feature_perturbation='tree_path_dependent')
  inter_explainer = shap.TreeExplainer(model, data=background,
                                       feature_perturbation='interventional')
  _ = forest.paths   # leaves as paths: once per model, as a worker does in setup
  ours_path, theirs_path = common.timed_alternating(
      [lambda: trees.path_dependent_shap(forest, rows, targets),
       lambda: path_explainer.shap_values(rows)], REPEATS)
  ours_inter, theirs_inter = common.timed_alternating(
      [lambda: trees.interventional_shap(forest, rows, background, targets),
       lambda: inter_explainer.shap_values(rows, check_additivity=False)], REPEATS)
  path_gap = float(np.abs(trees.path_dependent_shap(forest, rows, targets)[0] -
                          path_explainer.shap_values(rows)).max())
  inter_gap = float(np.abs(trees.interventional_shap(forest, rows, background, targets)[0] -
                           inter_explainer.shap_values(rows, check_additivity=False)).max())
  figures = {'trees': num_trees, 'max_depth': depth, 'features': num_features,
             'leaves': int(forest.paths.num_leaves), 'examples': n, 'background': r,
             'path_dependent': {'ours_s': ours_path, 'shap_s': theirs_path,
                                'shap_over_ours': theirs_path / ours_path,
                                'max_difference': path_gap},
             'interventional': {'ours_s': ours_inter, 'shap_s': theirs_inter,
                                'shap_over_ours': theirs_inter / ours_inter,
                                'max_difference': inter_gap}}
  print(f"  {name}: path-dependent ours {ours_path:.2f} s, shap {theirs_path:.2f} s; "
        f"interventional ours {ours_inter:.2f} s, shap {theirs_inter:.2f} s", flush=True)
  return figures


def headline(figures: dict) -> list:
  rows = []
  for name, case in figures['cases'].items():
    for algorithm in ('path_dependent', 'interventional'):
      part = case[algorithm]
      rows.append({'figure': f'Tree SHAP {algorithm.replace("_", "-")}, shap TreeExplainer ÷ '
                             f"engine ({name}; max difference {part['max_difference']:.1e})",
                   'value': part['shap_over_ours'], 'target': None})
  return rows


def markdown_table(figures: dict) -> str:
  lines = [f"Tree SHAP against shap's TreeExplainer on the same scikit-learn forests; "
           f"{common.machine_text(figures['machine'])}.", '',
           '| forest | leaves | examples | background | algorithm | engine (s) | shap (s) | '
           'shap ÷ engine | max difference |', '|---|---:|---:|---:|---|---:|---:|---:|---:|']
  for name, case in figures['cases'].items():
    for algorithm in ('path_dependent', 'interventional'):
      part = case[algorithm]
      lines.append(f"| {name} ({case['trees']} trees, depth {case['max_depth']}, "
                   f"{case['features']} features) | {case['leaves']:,} | {case['examples']:,} | "
                   f"{case['background'] if algorithm == 'interventional' else '—'} | "
                   f"{algorithm} | {part['ours_s']:.3f} | {part['shap_s']:.3f} | "
                   f"{part['shap_over_ours']:.2f} | {part['max_difference']:.1e} |")
  lines += ['', 'Both are exact: the differences are shap computing in float32. shap is C++ '
            'over one example at a time; the engine is numpy over all leaves of a batch.']
  return '\n'.join(lines) + '\n'


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--out', default=os.path.join(common.RESULTS_DIR, 'tree_shap.json'))
  args = parser.parse_args(argv)
  figures = {'machine': common.machine(),
             'cases': {c[0]: case_figures(*c) for c in CASES}}
  figures['headline'] = headline(figures)
  common.write_results(args.out, figures, markdown_table(figures))
  return figures


if __name__ == '__main__':
  main(sys.argv[1:])
