"""Attribution drift and skew with bootstrap intervals: statistics, resampling, planted effects."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from tfx_explain import AttributionDriftCheck, AttributionSkewCheck, ValidationConfig
from tfx_explain.artifacts import tables
from tfx_explain.configurable import ConfigError
from tfx_explain.artifacts import resampling
from tfx_explain.validation import ranking
from tfx_explain.validation.context import AttributionsView, CheckContext


# ---- statistics against brute force and closed forms ----

def test_ndcg_is_clarifys_formula():
  current = np.array([0.9, 0.1, 0.5, 0.3])
  reference = np.array([0.2, 0.6, 0.4, 0.05])
  # current order: f0, f2, f3, f1; relevance from the reference.
  dcg = 0.2 / np.log2(2) + 0.4 / np.log2(3) + 0.05 / np.log2(4)
  ideal = 0.6 / np.log2(2) + 0.4 / np.log2(3) + 0.2 / np.log2(4)
  assert ranking.ndcg_at_k(current, reference, 3)[0] == pytest.approx(dcg / ideal)
  assert ranking.ndcg_at_k(reference, reference, 3)[0] == pytest.approx(1.0)


def test_row_statistics_match_their_scalar_forms():
  from scipy import stats
  rng = np.random.default_rng(0)
  a, b = rng.random((50, 6)), rng.random((50, 6))
  b[3] = a[3]
  np.testing.assert_allclose(ranking.spearman_rows(a, b),
                             [stats.spearmanr(x, y)[0] for x, y in zip(a, b)], atol=1e-12)
  overlap = ranking.top_k_overlap(a, b, 2)
  expected = [len(set(ranking.top_k(dict(enumerate(x)), 2)) &
                  set(ranking.top_k(dict(enumerate(y)), 2))) / 2 for x, y in zip(a, b)]
  np.testing.assert_allclose(overlap, expected)


def test_histogram_distance_is_wasserstein_on_bin_edges():
  from scipy import stats
  rng = np.random.default_rng(1)
  edges = np.linspace(-1.0, 1.0, 21)
  # Values on the left edges of bins: the binned W1 is exact.
  a = rng.choice(edges[:-1], 300)
  b = rng.choice(edges[5:15], 200)
  hist_a = np.histogram(a, edges)[0][None].astype(float)
  hist_b = np.histogram(b, edges)[0][None].astype(float)
  assert ranking.histogram_distance(hist_a, hist_b, edges[None])[0] == pytest.approx(
      stats.wasserstein_distance(a, b), rel=1e-9)


# ---- resampling: deterministic, partition-free, Beam = in-process ----

def test_poisson_weights_are_poisson_and_depend_only_on_the_example():
  ids = np.arange(20000)
  weights = resampling.poisson_weights(3, 0, ids, 50)
  assert abs(weights.mean() - 1.0) < 0.01 and abs(weights.var() - 1.0) < 0.02
  # The same example gets the same weights wherever it appears.
  np.testing.assert_array_equal(resampling.poisson_weights(3, 0, ids[[7, 5]], 50),
                                weights[:, [7, 5]])
  assert not np.array_equal(resampling.poisson_weights(3, 2, ids[:100], 50), weights[:, :100])
  assert not np.array_equal(resampling.poisson_weights(4, 0, ids[:100], 50), weights[:, :100])


def _plan(features, slices=('Overall', 'island=Biscoe'), edges=None, draws=5):
  return resampling.ResamplingPlan(seed=0, stream=0, replicates=100, draws=draws,
                                   features=features, slices=slices, edges=edges)


def _features(view, method):
  return tuple(view.importance(method))


def test_sums_do_not_depend_on_how_the_table_is_cut(penguin_run):
  output, _ = penguin_run
  view = AttributionsView(output.uri)
  features = {m: _features(view, m) for m in view.methods}
  ranges = resampling.value_ranges(tables.per_example_frames(output.uri), features)
  plan = _plan(features, edges=resampling.histogram_edges([ranges], 16))
  frame = tables.load_attributions(output.uri)
  whole = resampling.accumulate_frames(plan, [frame])
  shuffled = frame.sample(frac=1.0, random_state=0)
  pieces = resampling.accumulate_frames(plan, np.array_split(shuffled, 7))
  assert set(whole) == set(pieces) == {(m, s) for m in view.methods
                                       for s in ('Overall', 'island=Biscoe')}
  for key, sums in whole.items():
    other = pieces[key]
    for name in ('count', 'abs_sum', 'weight', 'replicate_abs_sum', 'draw_abs_sum',
                 'histogram', 'replicate_histogram', 'draw_histogram'):
      np.testing.assert_allclose(getattr(other, name), getattr(sums, name), rtol=1e-12,
                                 err_msg=f'{key} {name}')
  # The point estimate is the summary's importance.
  for method in view.methods:
    np.testing.assert_allclose(whole[(method, 'Overall')].importance(),
                               [view.importance(method)[f] for f in features[method]],
                               rtol=1e-9)
  biscoe = view.summary.slice('island=Biscoe').examples
  assert whole[(view.methods[0], 'island=Biscoe')].examples == biscoe


def test_beam_gives_the_in_process_sums(penguin_run):
  import apache_beam as beam
  from tfx_explain.beam.resampling import resample_with_beam
  output, _ = penguin_run
  view = AttributionsView(output.uri)
  plan = _plan({m: _features(view, m) for m in view.methods})
  local = resampling.accumulate_frames(plan, tables.per_example_frames(output.uri))
  with_beam = resample_with_beam(beam.Pipeline, output.uri, 'eval', plan)
  assert set(with_beam) == set(local)
  for key, sums in local.items():
    np.testing.assert_allclose(with_beam[key].replicate_abs_sum, sums.replicate_abs_sum,
                               rtol=1e-12)
    assert with_beam[key].examples == sums.examples


# ---- the checks on real models with planted effects ----

def _run(check, current, baseline=None):
  context = CheckContext(current, baseline)
  check.validate(context)
  return check.run(context)


def _attribution_gen(penguin_artifacts, root, name, model_uri, examples_uri=None,
                     splits=('eval',), methods=None):
  from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap
  from tests.test_attribution_gen_executor import run_executor
  config = AttributionConfig(
      methods=methods or [IntegratedGradients(steps=32),
                          KernelShap(num_samples=32, background_size=20)],
      splits=list(splits), label_key='species', slicing_specs=[[], ['island']], batch_size=40)
  artifacts = penguin_artifacts
  if model_uri != artifacts.model_uri or examples_uri:
    import dataclasses
    artifacts = dataclasses.replace(artifacts, model_uri=model_uri,
                                    examples_uri=examples_uri or artifacts.examples_uri)
  return run_executor(artifacts, os.path.join(root, name), config).uri


# The feature the retrained model loses, and the one the skewed eval split shifts.
REMOVED = 'bill_length_mm'
SHIFTED = 'bill_length_mm'


@pytest.fixture(scope='module')
def planted(penguin_artifacts, tmp_path_factory):
  """Attributions of: the model; it retrained for longer (no drift); it retrained
  without `REMOVED`'s effect (drift); and the first two on an eval split whose
  `SHIFTED` feature is shifted (training/serving skew)."""
  from tests import penguin_fixtures
  root = str(tmp_path_factory.mktemp('planted'))
  schema = penguin_fixtures.penguin_schema()
  train = penguin_artifacts.splits['train']
  longer = penguin_fixtures.train_model(train, schema, os.path.join(root, 'longer'), epochs=60)
  without = train.copy()
  without[REMOVED] = np.random.default_rng(0).permutation(without[REMOVED].values)
  retrained = penguin_fixtures.train_model(without, schema, os.path.join(root, 'retrained'))
  skewed_eval = penguin_artifacts.splits['eval'].copy()
  skewed_eval[SHIFTED] = skewed_eval[SHIFTED] + 3.0 * train[SHIFTED].std()
  skewed = penguin_fixtures.write_examples(os.path.join(root, 'skewed'),
                                           {'train': train, 'eval': skewed_eval})
  run = lambda *a, **k: _attribution_gen(penguin_artifacts, root, *a, **k)  # noqa: E731
  return {
      'model': run('model', penguin_artifacts.model_uri),
      'longer': run('longer', longer),
      'retrained': run('retrained', retrained),
      'skewed_model': run('skewed_model', penguin_artifacts.model_uri, skewed),
      'skewed_longer': run('skewed_longer', longer, skewed, splits=('eval', 'train')),
  }


def _view(planted, name, split='eval'):
  return AttributionsView(planted[name], split)


@pytest.mark.slow
def test_a_lost_feature_effect_fails_drift_with_an_interval_below_the_line(planted):
  check = AttributionDriftCheck('integrated_gradients', 'ndcg', k=5, threshold=0.9,
                                per_slice=False)
  [result] = _run(check, _view(planted, 'retrained'), _view(planted, 'model'))
  assert not result.passed
  assert result.upper < 0.9 and result.lower <= result.value <= result.upper
  assert result.decided_on == 'upper'
  assert result.examples == AttributionsView(planted['model']).summary.examples
  # The lost feature is where the distribution moved most.
  distances = _run(AttributionDriftCheck('integrated_gradients', 'distance', per_slice=False),
                   _view(planted, 'retrained'), _view(planted, 'model'))
  worst = max(distances, key=lambda r: r.value)
  assert worst.feature == REMOVED and not worst.passed and worst.lower > 0.1


@pytest.mark.slow
def test_a_model_trained_for_longer_does_not_drift(planted):
  for statistic in ('ndcg', 'spearman', 'top_k_overlap', 'distance'):
    results = _run(AttributionDriftCheck('integrated_gradients', statistic),
                   _view(planted, 'longer'), _view(planted, 'model'))
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert {r.slice for r in results} >= {'Overall', 'island=Biscoe', 'island=Dream',
                                          'island=Torgersen'}
    assert all(r.lower <= r.value <= r.upper for r in results if r.value is not None)


def _subset(uri, destination, example_ids):
  """A copy of an artifact whose eval table holds only these examples."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  shutil.copytree(uri, destination)
  folder = os.path.join(destination, 'Split-eval', 'per_example')
  frame = tables.load_attributions(destination)
  frame = frame[frame['example_index'].isin(example_ids)]
  schema = pq.ParquetFile(os.path.join(folder, os.listdir(folder)[0])).schema_arrow
  for name in os.listdir(folder):
    os.remove(os.path.join(folder, name))
  pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False),
                 os.path.join(folder, 'part-0.parquet'))
  return destination


@pytest.mark.slow
def test_thirty_examples_without_drift_never_fail_over_twenty_seeds(planted, tmp_path):
  """The same model on two disjoint samples of 30 examples (a new day's data, no drift):
  each seed draws other samples and resamples with its own seed."""
  examples = tables.load_attributions(planted['model'])['example_index'].unique()
  outcomes = []
  for seed in range(20):
    ids = np.random.default_rng(seed).permutation(examples)
    now = _subset(planted['model'], str(tmp_path / f'now{seed}'), ids[:30])
    before = _subset(planted['model'], str(tmp_path / f'before{seed}'), ids[30:60])
    for method in ('integrated_gradients', 'kernel_shap'):
      for statistic in ('ndcg', 'distance'):
        results = _run(AttributionDriftCheck(method, statistic, seed=seed, per_slice=False),
                       AttributionsView(now), AttributionsView(before))
        assert all(r.examples == 30 for r in results)
        outcomes += [(seed, method, statistic, r.feature, r.lower, r.upper) for r in results
                     if not r.passed]
  assert not outcomes


@pytest.mark.slow
def test_skew_planted_in_the_eval_split_is_skew_not_drift(planted):
  serving = _view(planted, 'skewed_longer')
  context = CheckContext(serving)
  skew = AttributionSkewCheck('integrated_gradients', 'distance', per_slice=False)
  skew.validate(context)
  flagged = {r.feature: r for r in skew.run(context) if not r.passed}
  assert SHIFTED in flagged and flagged[SHIFTED].lower > 0.1, flagged
  # The last blessed model sees the same shifted serving data: the models agree.
  for statistic in ('ndcg', 'distance'):
    drift = _run(AttributionDriftCheck('integrated_gradients', statistic, per_slice=False),
                 serving, _view(planted, 'skewed_model'))
    assert all(r.passed for r in drift), [r for r in drift if not r.passed]


@pytest.mark.slow
def test_sampling_estimators_say_whether_the_verdict_holds(planted):
  [ig] = _run(AttributionDriftCheck('integrated_gradients', per_slice=False),
              _view(planted, 'longer'), _view(planted, 'model'))
  assert ig.stability is None   # a deterministic method
  # 32 of the 64 coalitions: Kernel SHAP estimates, with standard errors.
  [shap] = _run(AttributionDriftCheck('kernel_shap', per_slice=False),
                _view(planted, 'longer'), _view(planted, 'model'))
  assert shap.stability.startswith(('stable over 20', 'flips in'))
  # A line placed at the estimate flips with the estimator's noise.
  distances = _run(AttributionDriftCheck('kernel_shap', 'distance', per_slice=False),
                   _view(planted, 'longer'), _view(planted, 'model'))
  largest = max(distances, key=lambda r: r.value)
  at_estimate = AttributionDriftCheck('kernel_shap', 'distance', threshold=largest.value,
                                      decide_on='estimate', per_slice=False)
  [edge] = [r for r in _run(at_estimate, _view(planted, 'longer'), _view(planted, 'model'))
            if r.feature == largest.feature]
  assert edge.stability.startswith('flips in'), edge


def test_config_errors_name_the_parameter(penguin_run):
  output, _ = penguin_run
  view = AttributionsView(output.uri)
  with pytest.raises(ConfigError, match='statistic'):
    AttributionDriftCheck(statistic='kendall')
  with pytest.raises(ConfigError, match='decide_on'):
    AttributionDriftCheck(decide_on='middle')
  with pytest.raises(ConfigError, match='num_bootstrap'):
    AttributionDriftCheck(num_bootstrap=5)
  with pytest.raises(ConfigError, match="no 'train' split.*splits=\\['eval', 'train'\\]"):
    _run(AttributionSkewCheck(), view)
  with pytest.raises(ConfigError, match='training_split'):
    _run(AttributionSkewCheck(training_split='eval'), view)
  with pytest.raises(ConfigError, match="'deep_lift' is not in the attributions"):
    _run(AttributionDriftCheck('deep_lift'), view, view)
  first = _run(AttributionDriftCheck(), view)
  assert first[0].passed and 'no baseline' in first[0].message


def test_checks_round_trip_through_json():
  config = ValidationConfig(checks=[
      AttributionDriftCheck('kernel_shap', 'ndcg', threshold=0.9, k=5),
      AttributionSkewCheck(statistic='distance', threshold=0.2, training_split='training')])
  assert ValidationConfig.from_json(config.to_json()) == config


def test_a_discrete_similarity_keeps_its_value_inside_its_interval():
  """A top-2 overlap takes 0, 0.5 or 1: its interval holds the estimate, so a line at the
  estimate passes (a bias shift once pushed [0.497, 0.497] below an estimate of 0.5)."""
  check = AttributionDriftCheck(statistic='top_k_overlap', k=2, threshold=0.5)
  replicates = np.array([0.5] * 95 + [1.0] * 3 + [0.0] * 2)
  estimate, lower, upper = check._bias_corrected(np.float64(0.5), replicates, 0.95)  # pylint: disable=protected-access
  assert estimate == 0.5 and lower <= 0.5 <= upper and check._passes(upper)  # pylint: disable=protected-access
  distance = AttributionDriftCheck(statistic='distance')
  estimate, lower, upper = distance._bias_corrected(  # pylint: disable=protected-access
      np.array([0.2]), np.full((100, 1), 0.25) + np.linspace(-0.01, 0.01, 100)[:, None], 0.95)
  assert estimate[0] == pytest.approx(0.15) and lower[0] <= 0.15 <= upper[0]


def test_chunks_with_and_without_standard_errors_merge():
  """One row group of exact estimates (errors 0), one of sampled ones: the sums merge and
  the draws move only the sampled rows."""
  plan = resampling.ResamplingPlan(seed=0, stream=0, replicates=10, draws=4,
                                   features={'ks': ('a', 'b')}, slices=('Overall',))

  def frame(first, error):
    n = 5
    return pd.DataFrame({'example_index': np.arange(first, first + n), 'method': ['ks'] * n,
                         'slices': [[]] * n, 'a': np.ones(n), 'b': np.full(n, 2.0),
                         'standard_error:a': np.full(n, error),
                         'standard_error:b': np.full(n, error)})

  exact = resampling.accumulate_frames(plan, [frame(0, 0.0)])[('ks', 'Overall')]
  assert not exact.has_errors and exact.draw_abs_sum.shape == (4, 2)
  merged = resampling.accumulate_frames(plan, [frame(0, 0.0), frame(5, 0.5)])[('ks', 'Overall')]
  assert merged.has_errors and merged.examples == 10
  sampled = resampling.accumulate_frames(plan, [frame(5, 0.5)])[('ks', 'Overall')]
  np.testing.assert_allclose(merged.draw_abs_sum, exact.draw_abs_sum + sampled.draw_abs_sum)
