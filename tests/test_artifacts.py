"""Artifact I/O: slice statistics, the Summary they build, TFMA's records, staged publishing."""

import os

import numpy as np
import pytest

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import storage
from tfx_explain.artifacts import tfma
from tfx_explain.artifacts.statistics import SliceStatistics, merge_all
from tfx_explain.artifacts.summary import Summary, SummaryPlan, build_summary

FEATURES = ('a', 'b', 'x[0]', 'x[1]')
GROUPS = [[2, 3]]


def rows(seed, n):
  values = np.random.default_rng(seed).normal(size=(n, len(FEATURES)))
  values[::3, 1] = np.nan     # 'b' not attributed in every third row
  return values


def plan(**kwargs):
  defaults = dict(split='eval', features=FEATURES, output_kind='probability', target='predicted',
                  methods=('ig',), method_configs=({'method': 'integrated_gradients'},),
                  skipped_features=((),), value_kinds=('attribution',), reference_split='train',
                  feature_groups=(('x', ('x[0]', 'x[1]')),))
  defaults.update(kwargs)
  return SummaryPlan(**defaults)


def test_statistics_of_batches_merge_to_the_statistics_of_all_rows():
  parts = [rows(seed, n) for seed, n in ((0, 7), (1, 12), (2, 1))]
  predictions = [np.full(len(p), 0.25 * i) for i, p in enumerate(parts)]
  merged = merge_all(SliceStatistics.of_rows(p, q, groups=GROUPS)
                     for p, q in zip(parts, predictions))
  everything = np.concatenate(parts)
  np.testing.assert_allclose(merged.mean(), np.nanmean(everything, axis=0), rtol=1e-12)
  np.testing.assert_allclose(merged.mean_abs(), np.nanmean(np.abs(everything), axis=0),
                             rtol=1e-12)
  assert merged.count.tolist() == (~np.isnan(everything)).sum(axis=0).tolist()
  totals = everything[:, 2] + everything[:, 3]
  np.testing.assert_allclose(merged.group_means()['mean'], [totals.mean()], rtol=1e-12)
  assert merged.per_example(merged.prediction_sum) == pytest.approx(
      np.concatenate(predictions).mean())


def test_a_feature_never_attributed_has_no_mean_and_no_rank():
  values = rows(3, 5)
  values[:, 0] = np.nan
  stats = SliceStatistics.of_rows(values, np.zeros(5))
  assert np.isnan(stats.mean()[0]) and np.isnan(stats.totals()[0])
  summary = build_summary(plan(feature_groups=()), {((), 'ig'): stats}, {}, 0, 2.0)
  assert 'a' not in summary.overall.methods['ig'].mean_absolute_attribution
  assert 'a' not in summary.overall.methods['ig'].ranking


def test_summary_from_statistics_and_quantiles_round_trips(tmp_path):
  north, south = rows(4, 10), rows(5, 30)
  everything = np.concatenate([north, south])
  statistics = {
      ((), 'ig'): SliceStatistics.of_rows(everything, np.zeros(40), np.full(40, 0.1),
                                          np.full(40, 0.01), GROUPS),
      ((('region', 'north'),), 'ig'): SliceStatistics.of_rows(north, np.zeros(10),
                                                              np.full(10, 0.1),
                                                              np.full(10, 0.01), GROUPS)}
  quantiles = {('ig', 'Overall', 'absolute'): list(np.linspace(0, 1, 101)),
               ('ig', 'Overall', 'relative'): list(np.linspace(0, 2, 101))}
  summary = build_summary(plan(), statistics, quantiles, skipped_rows=3, compute_seconds=4.0)
  assert summary.slice_names == ['Overall', 'region=north']
  assert summary.examples == 40 and summary.examples_per_second == 10.0
  overall = summary.overall.methods['ig']
  expected = np.nanmean(np.abs(everything), axis=0)
  assert overall.ranking == [FEATURES[i] for i in np.argsort(-expected)]
  assert overall.mean_completeness_error == pytest.approx(0.1)
  assert overall.absolute_completeness_error.p95 == pytest.approx(0.95)
  assert summary.methods['ig'].relative_completeness_error.max == pytest.approx(2.0)
  assert summary.importance('ig', 'region=north')['a'] == pytest.approx(np.abs(north[:, 0]).mean())
  summary.write(str(tmp_path))
  assert Summary.from_dict(layout.read_json(str(tmp_path / layout.SUMMARY_FILE))) == summary
  with pytest.raises(KeyError, match="slices: \\['Overall', 'region=north'\\]"):
    summary.slice('region=south')


def test_summary_needs_the_overall_slice():
  with pytest.raises(ValueError, match='Overall'):
    build_summary(plan(), {((('r', 'n'),), 'ig'): SliceStatistics.of_rows(rows(6, 3),
                                                                       np.zeros(3))}, {}, 0, 1.0)


def test_tfma_records_hold_the_summary_means(tmp_path):
  import tensorflow_model_analysis as tfma_lib
  values = rows(7, 9)
  statistics = {((), 'ig'): SliceStatistics.of_rows(values, np.zeros(9))}
  tfma.write_attributions(str(tmp_path), statistics, FEATURES)
  [record] = list(tfma_lib.load_attributions(str(tmp_path)))
  by_name = {a.key.name: a.values for a in record.attributions_keys_and_values}
  means = by_name['ig/mean_absolute_attributions']
  for j, feature in enumerate(FEATURES):
    assert means[feature].double_value.value == pytest.approx(np.nanmean(np.abs(values[:, j])))
  assert by_name['ig/total_attributions']['b'].double_value.value == pytest.approx(
      np.nansum(values[:, 1]))


def test_staged_output_publishes_only_on_success(tmp_path):
  uri = str(tmp_path / 'out')
  os.makedirs(uri)
  with storage.staged_output(uri) as staging:
    layout.write_json(os.path.join(staging, 'a.json'), {'ok': 1})
  assert sorted(os.listdir(uri)) == ['a.json']
  with pytest.raises(RuntimeError, match='half way'):
    with storage.staged_output(uri) as staging:
      layout.write_json(os.path.join(staging, 'a.json'), {'ok': 2})
      raise RuntimeError('half way')
  assert sorted(os.listdir(uri)) == ['a.json']
  assert layout.read_json(os.path.join(uri, 'a.json')) == {'ok': 1}


def test_storage_refusing_writes_is_named(tmp_path):
  uri = str(tmp_path / 'out')
  with pytest.raises(storage.OutputWriteError, match=f'Cannot write the output to {uri}: No space'):
    with storage.staged_output(uri):
      raise RuntimeError('wrapped') from OSError(28, 'No space left on device')


# summary.json exactly as written down in the README: readers must keep reading this file.
LITERAL_SUMMARY = {
    'split': 'eval', 'examples': 40, 'skipped_non_finite_rows': 2,
    'features': ['a', 'b'], 'output_kind': 'probability', 'target': 'predicted',
    'reference_split': 'train', 'example_files': ['/data/Split-eval/part-0.gz'],
    'feature_groups': {}, 'compute_seconds': 4.0,
    'examples_per_second': 10.0, 'image': None, 'note_on_skips': 'skipped rows are counted',
    'token_summary': '',
    'methods': {'ig': {'config': {'method': 'integrated_gradients', 'steps': 64},
                       'skipped_features': [], 'value_kind': 'attribution',
                       'absolute_completeness_error': {'p50': 0.001, 'p95': 0.004, 'max': 0.01},
                       'relative_completeness_error': None,
                       'steps': {'p50': 64.0, 'p95': 96.0, 'max': 128.0}}},
    'slices': [
        {'slice': 'Overall', 'slice_key': [], 'examples': 40, 'methods': {'ig': {
            'mean_absolute_attribution': {'a': 0.3, 'b': 0.1}, 'mean_attribution': {'a': -0.2,
                                                                                  'b': 0.1},
            'ranking': ['a', 'b'], 'mean_completeness_error': 0.002,
            'mean_relative_completeness_error': 0.01, 'mean_prediction': 0.6,
            'feature_groups': {}, 'absolute_completeness_error': {'p50': 0.001, 'p95': 0.004,
                                                                  'max': 0.01},
            'relative_completeness_error': None,
            'mean_standard_error': {'a': 0.02, 'b': 0.01}, 'mean_steps': 70.0}}},
        {'slice': 'island=Biscoe', 'slice_key': [['island', 'Biscoe']], 'examples': 12,
         'methods': {'ig': {'mean_absolute_attribution': {'a': 0.5}, 'mean_attribution': {'a': 0.5},
                            'ranking': ['a'], 'mean_completeness_error': 0.0,
                            'mean_relative_completeness_error': 0.0, 'mean_prediction': 0.4}}}],
}


def test_a_summary_file_written_out_reads_back_field_by_field(tmp_path):
  split_dir = layout.split_uri(str(tmp_path), 'eval')
  os.makedirs(split_dir)
  layout.write_json(os.path.join(split_dir, layout.SUMMARY_FILE), LITERAL_SUMMARY)
  summary = Summary.load(str(tmp_path), 'eval')
  assert summary.examples == 40 and summary.skipped_non_finite_rows == 2
  assert summary.slice_names == ['Overall', 'island=Biscoe']
  assert summary.importance('ig', 'island=Biscoe') == {'a': 0.5}
  assert summary.methods['ig'].absolute_completeness_error.p95 == 0.004
  assert summary.methods['ig'].relative_completeness_error is None
  assert summary.slice('island=Biscoe').methods['ig'].absolute_completeness_error is None
  assert summary.importance_frame().loc['b', 'ig'] == 0.1
  assert summary.methods['ig'].steps.p95 == 96.0
  assert summary.overall.methods['ig'].mean_standard_error == {'a': 0.02, 'b': 0.01}
  assert summary.overall.methods['ig'].mean_steps == 70.0
  # Written back, the file is the same but for the defaults the shorter slice left out.
  written = summary.to_dict()
  assert {k: v for k, v in written.items() if k != 'slices'} == {
      k: v for k, v in LITERAL_SUMMARY.items() if k != 'slices'}
  assert written['slices'][0] == LITERAL_SUMMARY['slices'][0]


def test_maps_below_an_index_read_only_the_shards_that_hold_them(tmp_path):
  from tfx_explain.artifacts import tables
  maps_dir = os.path.join(layout.split_uri(str(tmp_path), 'eval'), layout.MAPS_DIR)
  for first in (0, 4):
    indices = np.arange(first, first + 4)
    tables.write_maps(os.path.join(maps_dir, tables.map_shard_name('ig', first)), indices,
                      np.full((4, 2, 2, 1), first, np.float32))
  # A shard starting past the bound must not be opened: this one is not even an npz file.
  with open(os.path.join(maps_dir, tables.map_shard_name('ig', 8)), 'wb') as f:
    f.write(b'not a map shard')
  indices, maps = tables.load_maps(str(tmp_path), 'eval', 'ig', below=6)
  assert indices.tolist() == [0, 1, 2, 3, 4, 5]
  assert maps[:, 0, 0, 0].tolist() == [0, 0, 0, 0, 4, 4]
