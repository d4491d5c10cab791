"""AttributionGen executor on real artifacts on disk (penguin examples, schema, model)."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap
from tfx_explain.artifacts import layout
from tfx_explain.artifacts import storage
from tfx_explain.artifacts import tables
from tfx_explain.attribution_gen import executor as executor_lib
from tfx_explain import beam_executor
from tfx_explain.attribution_gen import inputs as attribution_inputs
from tfx_explain.types import Attributions


def run_executor(artifacts, output_uri, config, schema=True, examples=None, model=None,
                 beam_args=None):
  output = Attributions()
  output.uri = output_uri
  os.makedirs(output_uri, exist_ok=True)
  inputs = {'examples': [examples or artifacts.examples()], 'model': [model or artifacts.model()]}
  if schema is True:
    inputs['schema'] = [artifacts.schema()]
  elif schema:
    inputs['schema'] = [schema]
  context = executor_lib.Executor.Context(beam_pipeline_args=beam_args or [
      '--direct_num_workers=1', '--direct_running_mode=in_memory'],
                                          tmp_dir=os.path.join(output_uri, '..', 'tmp'))
  executor_lib.Executor(context).Do(inputs, {'attributions': [output]},
                                    {'config': config.to_json()})
  return output


def test_per_example_table(penguin_artifacts, penguin_run):
  output, _ = penguin_run
  frame = tfx_explain.load_attributions(output.uri, 'eval')
  n_eval = len(penguin_artifacts.splits['eval'])
  assert sorted(set(frame['method'])) == ['integrated_gradients', 'kernel_shap']
  ig = frame[frame['method'] == 'integrated_gradients']
  assert sorted(ig['example_index']) == list(range(n_eval))
  # Integrated Gradients steps the string features from their most frequent value.
  assert ig[['island', 'sex', 'bill_length_mm']].notna().all().all()
  mode_island = penguin_artifacts.splits['train']['island'].mode()[0]
  eval_island = penguin_artifacts.splits['eval']['island'].to_numpy()
  at_mode = ig['example_index'].map(lambda i: eval_island[i] == mode_island).to_numpy()
  assert (ig['island'][at_mode].abs() < 1e-6).all(), 'no step, no attribution'
  assert (ig['island'][~at_mode].abs() > 0).any()
  ks = frame[frame['method'] == 'kernel_shap']
  assert ks['island'].notna().all()
  # Kernel SHAP is efficient by construction; IG completeness is small.
  assert ks['completeness_error'].max() < 1e-4
  assert ig['relative_completeness_error'].median() < 0.05
  assert (ig['output_kind'] == 'probability').all()


def test_summary_and_properties(penguin_run):
  output, _ = penguin_run
  summary = tfx_explain.load_summary(output.uri, 'eval')
  assert summary.examples == output.get_int_custom_property('eval_example_count')
  slices = set(summary.slice_names)
  assert 'Overall' in slices and any(s.startswith('island=') for s in slices)
  ig = summary.methods['integrated_gradients']
  assert ig.skipped_features == []
  assert json.loads(output.get_string_custom_property('methods')) == [
      'integrated_gradients', 'kernel_shap']
  error = ig.absolute_completeness_error
  for quantile in ('p50', 'p95'):
    assert output.get_float_custom_property(
        f'eval_integrated_gradients_completeness_error_{quantile}') == pytest.approx(
            getattr(error, quantile), rel=1e-12)
  overall = summary.slices[0]
  assert overall.slice == 'Overall'
  assert set(overall.methods['kernel_shap'].ranking) == set(summary.features)
  assert not tf.io.gfile.exists(os.path.join(output.uri, storage.STAGING_DIR))


def test_completeness_quantiles_are_those_of_the_per_example_errors(penguin_artifacts,
                                                                   penguin_run):
  """Overall and per-slice p50/p95/max equal the quantiles of the table's errors.

  On fewer examples than its buffer holds, Beam's ApproximateQuantiles is exact: the
  element at rank ceil(q * n) (numpy's 'inverted_cdf').
  """
  output, _ = penguin_run
  summary = tfx_explain.load_summary(output.uri, 'eval')
  frame = tfx_explain.load_attributions(output.uri, 'eval')
  islands = penguin_artifacts.splits['eval']['island'].to_numpy()   # by example_index
  slices = {entry.slice: entry for entry in summary.slices}
  assert set(slices) == {'Overall'} | {f'island={name}' for name in set(islands)}
  for method in ('integrated_gradients', 'kernel_shap'):
    rows = frame[frame['method'] == method]
    assert len(rows) == summary.examples
    for slice_name, entry in slices.items():
      members = rows if slice_name == 'Overall' else rows[
          islands[rows['example_index'].to_numpy()] == slice_name.split('=')[1]]
      assert len(members) == entry.examples
      for kind, column in (('absolute', 'completeness_error'),
                           ('relative', 'relative_completeness_error')):
        errors = members[column].to_numpy(np.float64)
        assert np.isfinite(errors).all()
        expected = {'p50': np.quantile(errors, 0.5, method='inverted_cdf'),
                    'p95': np.quantile(errors, 0.95, method='inverted_cdf'),
                    'max': errors.max()}
        found = getattr(entry.methods[method], f'{kind}_completeness_error')
        assert dataclasses.asdict(found) == pytest.approx(expected, rel=1e-9), (
            method, slice_name, kind)
        if slice_name == 'Overall':
          found = getattr(summary.methods[method], f'{kind}_completeness_error')
          assert dataclasses.asdict(found) == pytest.approx(expected, rel=1e-9), (method, kind)


def test_throughput_is_examples_over_the_engine_seconds(penguin_run):
  """examples_per_second: examples over the seconds the workers spent in the engine, which
  are a part of the whole run's."""
  output, _ = penguin_run
  summary = tfx_explain.load_summary(output.uri, 'eval')
  pipeline_seconds = output.get_float_custom_property('pipeline_seconds')
  assert 0 < summary.compute_seconds < pipeline_seconds
  assert summary.examples_per_second == pytest.approx(summary.examples / summary.compute_seconds)
  assert output.get_float_custom_property('examples_per_second') == pytest.approx(
      summary.examples_per_second)


def test_tfma_reads_attributions(penguin_run):
  import tensorflow_model_analysis as tfma
  output, _ = penguin_run
  split_dir = os.path.join(output.uri, 'Split-eval')
  protos = list(tfma.load_attributions(split_dir))
  assert len(protos) >= 2
  result = tfma.load_eval_result(split_dir)
  overall = result.get_attributions_for_slice(
      metric_name='kernel_shap/mean_absolute_attributions')
  summary = tfx_explain.load_summary(output.uri, 'eval')
  expected = summary.importance('kernel_shap')
  for feature, value in expected.items():
    assert overall[feature]['doubleValue'] == pytest.approx(value, rel=1e-9)


def engine_inputs(penguin_artifacts, output):
  """(model, eval features, reference statistics) as the run's workers had them."""
  from tfx_explain.engine.loading import load_model_function
  model = load_model_function(penguin_artifacts.model_uri)
  part = penguin_artifacts.splits['eval']
  features = {n: part[n].values.astype(np.float32 if part[n].dtype.kind == 'f' else bytes)
              for n in model.input_names}
  return model, features, tables.load_reference(output.uri)


def test_per_example_matches_engine(penguin_artifacts, penguin_run):
  """The Beam path gives the engine's numbers for the same examples."""
  output, _ = penguin_run
  frame = tfx_explain.load_attributions(output.uri, 'eval', method='integrated_gradients')
  model, features, reference = engine_inputs(penguin_artifacts, output)
  result = IntegratedGradients(steps=32).attribute(model, features, reference)
  np.testing.assert_allclose(frame['bill_length_mm'].values,
                             result.attributions[:, model.input_names.index('bill_length_mm')],
                             rtol=1e-4, atol=1e-6)


def summary_steps(uri, method):
  return tfx_explain.load_summary(uri, 'eval').overall.methods[method].mean_steps


def test_kernel_shap_standard_errors_and_steps_reach_every_reader(penguin_artifacts, penguin_run):
  """The table holds the engine's standard errors and coalitions; summary, TFMA and ML
  Metadata hold their means and quantiles."""
  from tfx_explain.artifacts import tfma as tfma_files
  output, _ = penguin_run
  frame = tfx_explain.load_attributions(output.uri, 'eval', method='kernel_shap')
  model, features, reference = engine_inputs(penguin_artifacts, output)
  part = penguin_artifacts.splits['eval']
  result = KernelShap(num_samples=32, background_size=20).attribute(
      model, features, reference, example_ids=np.arange(len(part)))
  errors = tables.standard_error_frame(frame)
  assert list(errors.columns) == model.input_names
  np.testing.assert_allclose(errors.values, result.standard_errors, rtol=1e-6, atol=1e-9)
  assert (errors.values > 0).all()   # 32 of 62 coalitions: sampled, not enumerated
  assert frame['steps'].tolist() == result.steps.tolist() == [32] * len(part)
  ig = tfx_explain.load_attributions(output.uri, 'eval', method='integrated_gradients')
  # 32 points along each of IG's two float paths (the string inputs stepped before and after).
  assert (ig['steps'] == 64).all()
  assert summary_steps(output.uri, 'integrated_gradients') == 64
  assert output.get_float_custom_property('eval_integrated_gradients_steps_p95') == 64
  assert tables.standard_error_frame(ig).isna().all().all()
  summary = tfx_explain.load_summary(output.uri, 'eval')
  overall = summary.overall.methods['kernel_shap']
  for feature in model.input_names:
    assert overall.mean_standard_error[feature] == pytest.approx(errors[feature].mean())
  assert overall.mean_steps == 32 and summary.methods['kernel_shap'].steps.max == 32
  assert summary.overall.methods['integrated_gradients'].mean_standard_error == {}
  import tensorflow_model_analysis as tfma
  from_tfma = tfma.load_eval_result(layout.split_uri(output.uri, 'eval')).get_attributions_for_slice(
      metric_name=tfma_files.metric_name('kernel_shap', tfma_files.MEAN_STANDARD_ERROR_NAME))
  for feature in model.input_names:
    assert from_tfma[feature]['doubleValue'] == pytest.approx(overall.mean_standard_error[feature])
  assert output.get_float_custom_property('eval_kernel_shap_steps_p95') == 32


def _tensorboard_tags(logdir):
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(logdir, size_guidance={'tensors': 0,
                                                                          'images': 0})
  accumulator.Reload()
  return accumulator.Tags()


def test_tensorboard_summaries(penguin_run):
  output, _ = penguin_run
  tags = _tensorboard_tags(os.path.join(output.uri, 'tensorboard', 'eval'))
  tensors = set(tags['tensors'])
  assert 'kernel_shap/island' in tensors and 'integrated_gradients/bill_length_mm' in tensors
  assert 'kernel_shap/mean_abs_attribution/sex' in tensors


def test_per_example_files_have_the_table_schema(penguin_run):
  import pyarrow.parquet as pq
  output, _ = penguin_run
  folder = os.path.join(layout.split_uri(output.uri, 'eval'), layout.PER_EXAMPLE_DIR)
  files = tf.io.gfile.glob(os.path.join(folder, '*.parquet'))
  assert files
  meta = [name for name, _ in tables.PER_EXAMPLE_META_COLUMNS] + [tables.SLICES_COLUMN]
  for name in files:
    parquet = pq.ParquetFile(name)
    # Kernel SHAP reports standard errors: one column each after the features.
    names = parquet.schema_arrow.names[len(meta):]
    features = names[:len(names) // 2]
    assert 'bill_length_mm' in features and 'island' in features
    assert names[len(features):] == [tables.standard_error_column(f) for f in features]
    assert parquet.schema_arrow == tables.per_example_schema(features, standard_errors=True)
    assert all(parquet.metadata.row_group(g).num_rows <= tables.PER_EXAMPLE_ROW_GROUP_ROWS
               for g in range(parquet.num_row_groups))


def test_per_example_frames_stream_one_row_group_at_a_time(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  folder = tmp_path / layout.split_dir_name('eval') / layout.PER_EXAMPLE_DIR
  folder.mkdir(parents=True)
  schema = tables.per_example_schema(['x'])
  for shard, first in enumerate((0, 10)):
    n = 10
    table = pa.Table.from_pydict({
        'example_index': list(range(first, first + n)), 'method': ['ig'] * n,
        'target': [0] * n, 'output_kind': ['probability'] * n, 'value_kind': ['attribution'] * n,
        'prediction': [0.5] * n, 'baseline_prediction': [0.1] * n,
        'completeness_error': [None] * n, 'relative_completeness_error': [None] * n,
        'steps': [None] * n, 'slices': [[]] * n, 'x': [float(i) for i in range(first, first + n)]}, schema=schema)
    pq.write_table(table, str(folder / f'part-{shard}.parquet'), row_group_size=4)
  frames = list(tables.per_example_frames(str(tmp_path), 'eval'))
  # 10 rows in groups of 4: 4 + 4 + 2, per shard.
  assert [len(f) for f in frames] == [4, 4, 2, 4, 4, 2]
  frame = tfx_explain.load_attributions(str(tmp_path), 'eval')
  assert frame['example_index'].tolist() == list(range(20))
  assert frame['x'].tolist() == [float(i) for i in range(20)]
  assert frame['completeness_error'].isna().all()


@pytest.mark.parametrize('args, local', [
    ([], True), (['--direct_num_workers=2'], True), (['--runner=DirectRunner'], True),
    (['--runner=direct'], True), (['--runner=DataflowRunner', '--project=p'], False),
    (['--runner=FlinkRunner'], False), (['--runner=PortableRunner'], False)])
def test_which_runners_run_in_this_environment(args, local):
  assert beam_executor.runs_in_this_environment(args) is local


def test_tfx_packages_its_source_only_for_remote_workers(monkeypatch, tmp_path):
  from tfx.utils import dependency_utils
  built = []
  monkeypatch.setattr(dependency_utils, 'build_ephemeral_package',
                      lambda: built.append(1) or str(tmp_path / 'tfx_ephemeral.tar.gz'))
  context = executor_lib.Executor.Context(
      beam_pipeline_args=['--direct_running_mode=in_memory'], tmp_dir=str(tmp_path))
  local = executor_lib.Executor(context)
  assert not built and local._beam_pipeline_args == ['--direct_running_mode=in_memory']
  remote = executor_lib.Executor(executor_lib.Executor.Context(
      beam_pipeline_args=['--runner=DataflowRunner', '--project=p'], tmp_dir=str(tmp_path)))
  assert built and any(a.startswith('--extra_package=') for a in remote._beam_pipeline_args)


@pytest.mark.parametrize('name', ['example_index', 'prediction', 'relative_completeness_error'])
def test_model_input_named_like_a_table_column_is_refused(name):
  model = type('Model', (), {'input_names': ['bill_length_mm', name]})()
  with pytest.raises(tfx_explain.engine.base.ConfigError, match=f"Model input '{name}' clashes"):
    attribution_inputs.feature_spec(AttributionConfig(methods=[IntegratedGradients()]),
                                    model, None)


def test_a_feature_a_method_cannot_attribute_is_absent_from_tfma_not_zero(penguin_artifacts,
                                                                         tmp_path):
  import tensorflow_model_analysis as tfma
  config = AttributionConfig(methods=[IntegratedGradients(steps=8, discrete='skip')],
                             splits=['eval'], label_key='species', batch_size=64)
  output = run_executor(penguin_artifacts, str(tmp_path / 'out'), config)
  frame = tfx_explain.load_attributions(output.uri, 'eval')
  assert frame['island'].isna().all()
  for slice_attributions in tfma.load_attributions(os.path.join(output.uri, 'Split-eval')):
    for key_and_values in slice_attributions.attributions_keys_and_values:
      features = set(key_and_values.values.keys())
      assert 'island' not in features and 'sex' not in features, key_and_values.key.name
      assert 'bill_length_mm' in features


def test_config_json_is_what_the_user_passed_and_overall_is_still_summarised(penguin_artifacts,
                                                                             tmp_path):
  config = AttributionConfig(methods=[IntegratedGradients(steps=8)], splits=['eval'],
                             label_key='species', slicing_specs=[['island']], batch_size=16,
                             max_examples_per_split=24)
  output = run_executor(penguin_artifacts, str(tmp_path / 'out'), config)
  assert layout.load_attribution_config(output.uri) == json.loads(config.to_json())
  assert layout.load_attribution_config(output.uri)['slicing_specs'] == [['island']]
  summary = tfx_explain.load_summary(output.uri, 'eval')
  assert summary.slice_names[0] == 'Overall' and summary.examples == 24
  islands = {name for name in summary.slice_names[1:]}
  assert islands and all(name.startswith('island=') for name in islands)
  assert sum(summary.slice(name).examples for name in islands) == 24
