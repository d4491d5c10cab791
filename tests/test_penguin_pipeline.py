"""End to end: the penguin pipeline on LocalDagRunner with a sqlite ML Metadata store.

Two runs share one store: the first has no baseline and pushes; the second
compares its explanations against the first run's blessed model. A third
pipeline sets a sensitive-feature limit the model violates: NOT_BLESSED, no push.
"""

import os

import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import (AttributionConfig, AttributionDriftCheck, AttributionSkewCheck,
                         CompletenessCheck, Distillation, FeatureShareLimit,
                         IntegratedGradients, KernelShap, PruningConfig, SampledShapley,
                         ValidationConfig)

ATTRIBUTION_CONFIG = dict(
    methods=[IntegratedGradients(steps=128), KernelShap(num_samples=128, background_size=20),
             SampledShapley(num_permutations=8)],
    splits=['eval', 'train'], label_key='species',
    slicing_specs=[[], ['island'], ['island', 'sex']])


# The default checks minus the model-based ones (slow), with drift and skew lines
# that two short training runs clear: the test is about the wiring.
PASSING_CHECKS = ValidationConfig(checks=[
    CompletenessCheck(max_relative_error_p95=0.2),
    FeatureShareLimit('sex', max_share=0.25, methods=['kernel_shap']),
    AttributionDriftCheck(method='kernel_shap', statistic='ndcg', k=5, threshold=0.5),
    AttributionSkewCheck(method='kernel_shap', statistic='ndcg', k=5, threshold=0.5)])


def run_pipeline(root, name, validation_config=PASSING_CHECKS, include_pruning=False,
                 orchestrator='local'):
  from tfx_explain.pipelines import orchestrators
  from tfx_explain.pipelines.penguin import pipeline as penguin
  metadata_path = os.path.join(root, 'metadata.sqlite')
  orchestrators.runner(orchestrator).run(penguin.create_pipeline(
      name, os.path.join(root, 'pipeline_root'), metadata_path, train_steps=60,
      attribution_config=AttributionConfig(**ATTRIBUTION_CONFIG),
      validation_config=validation_config, include_pruning=include_pruning,
      pruning_config=PruningConfig(target_sparsity=0.8, fine_tune_steps=100,
                                   label_key='species', learning_rate=3e-3,
                                   distillation=Distillation(temperature=2.0, alpha=0.5))))
  return metadata_path


def _store(metadata_path):
  from ml_metadata.metadata_store import metadata_store
  from tfx.orchestration import metadata
  return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


def _by_id(store, type_name):
  return sorted(store.get_artifacts_by_type(type_name), key=lambda a: a.id)


def served_accuracy(model_uri, examples_uri, split='eval'):
  """Accuracy of a Format-Serving model's serving signature on every example of a split."""
  import numpy as np
  files = tf.io.gfile.glob(os.path.join(examples_uri, f'Split-{split}', '*'))
  serialized = list(tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator())
  labels = [tf.train.Example.FromString(s).features.feature['species'].int64_list.value[0]
            for s in serialized]
  signature = tf.saved_model.load(os.path.join(model_uri, 'Format-Serving')).signatures[
      'serving_default']
  [key] = list(signature.structured_outputs)
  predicted = np.argmax(signature(tf.constant(serialized))[key].numpy(), axis=1)
  return float(np.mean(predicted == np.asarray(labels)))


def overall_ndcg(current_uri, baseline_uri, method, k):
  """Clarify's nDCG@k of the Overall mean |attribution| of two Attributions artifacts."""
  import math
  now = tfx_explain.load_summary(current_uri).importance(method)
  before = tfx_explain.load_summary(baseline_uri).importance(method)
  assert sorted(before) == sorted(now)
  ranked = sorted(now, key=lambda f: -now[f])[:k]
  ideal = sorted(before.values(), reverse=True)[:k]
  dcg = sum(before[f] / math.log2(i + 2) for i, f in enumerate(ranked))
  return dcg / sum(v / math.log2(i + 2) for i, v in enumerate(ideal))


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('pipeline'))
  run_pipeline(root, 'penguin-test')
  return run_pipeline(root, 'penguin-test')


@pytest.fixture(scope='module')
def violating_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('violating'))
  # bill_length_mm carries about a third of the evidence; a 5 % limit must fail.
  config = ValidationConfig(checks=[
      CompletenessCheck(max_relative_error_p95=0.5),
      FeatureShareLimit('bill_length_mm', max_share=0.05, methods=['kernel_shap'])])
  return run_pipeline(root, 'penguin-violating', config)


@pytest.mark.slow
def test_attributions_artifact_is_tracked_with_lineage(two_runs):
  store = _store(two_runs)
  artifact = _by_id(store, 'tfx_explain.Attributions')[-1]
  assert artifact.state == artifact.LIVE
  props = artifact.custom_properties
  assert props['eval_example_count'].int_value > 50
  assert props['eval_integrated_gradients_completeness_error_p95'].double_value < 0.05
  # Lineage: the execution that wrote it read the Trainer's model and ExampleGen's examples.
  [output_event] = [e for e in store.get_events_by_artifact_ids([artifact.id])
                    if e.type == e.OUTPUT]
  inputs = [e for e in store.get_events_by_execution_ids([output_event.execution_id])
            if e.type == e.INPUT]
  input_types = {store.get_artifact_types_by_id(
      [a.type_id])[0].name for a in store.get_artifacts_by_id([e.artifact_id for e in inputs])}
  assert {'Model', 'Examples', 'Schema'} <= input_types
  models = {m.id for m in store.get_artifacts_by_type('Model')}
  assert props['model_id'].int_value in models


@pytest.mark.slow
def test_attributions_readable_by_tfma_and_notebook_api(two_runs):
  import tensorflow_model_analysis as tfma
  store = _store(two_runs)
  artifact = _by_id(store, 'tfx_explain.Attributions')[-1]
  split_dir = os.path.join(artifact.uri, 'Split-eval')
  slices = list(tfma.load_attributions(split_dir))
  keys = {tuple((c.column, c.bytes_value) for c in s.slice_key.single_slice_keys) for s in slices}
  assert () in keys and any(len(k) == 2 for k in keys)
  frame = tfx_explain.load_attributions(artifact.uri)
  assert set(frame['method']) == {'integrated_gradients', 'kernel_shap', 'sampled_shapley'}
  summary = tfx_explain.load_summary(artifact.uri)
  assert summary.overall.examples == artifact.custom_properties[
      'eval_example_count'].int_value
  assert tf.io.gfile.exists(os.path.join(artifact.uri, 'reference.json'))


@pytest.mark.slow
def test_passing_runs_push(two_runs):
  store = _store(two_runs)
  validations = _by_id(store, 'tfx_explain.ExplanationValidation')
  assert len(validations) == 2
  for validation in validations:
    report = tfx_explain.load_validation(validation.uri)
    assert report['blessed'], [c for c in report['checks'] if not c['passed']]
  pushed = _by_id(store, 'PushedModel')
  assert [p.custom_properties['pushed'].int_value for p in pushed] == [1, 1]


@pytest.mark.slow
def test_second_run_compares_against_first_runs_blessed_model(two_runs):
  store = _store(two_runs)
  first, second = _by_id(store, 'tfx_explain.Attributions')
  first_report = tfx_explain.load_validation(
      _by_id(store, 'tfx_explain.ExplanationValidation')[0].uri)
  second_report = tfx_explain.load_validation(
      _by_id(store, 'tfx_explain.ExplanationValidation')[1].uri)
  assert first_report['inputs']['baseline_attributions'] is None
  assert any('no baseline' in c['message'] for c in first_report['checks'])
  assert second_report['inputs']['baseline_attributions'] == first.uri
  [drift] = [c for c in second_report['checks'] if c['check'] == 'attribution_drift'
             and c['slice'] == 'Overall' and c['details']['statistic'] == 'ndcg']
  assert drift['details']['plug_in'] == pytest.approx(
      overall_ndcg(second.uri, first.uri, drift['method'], 5))
  assert drift['lower'] <= drift['value'] <= drift['upper'] and drift['examples'] > 0
  # The training split is explained too, and the skew check compared it.
  assert 'train' in tfx_explain.artifacts.layout.available_splits(second.uri)
  assert [c for c in second_report['checks'] if c['check'] == 'attribution_skew']
  # The second blessing records which model it was compared with.
  blessings = [b for b in _by_id(store, 'ModelBlessing') if 'baseline_model_id' in
               b.custom_properties]
  assert blessings and blessings[-1].custom_properties['baseline_model_id'].int_value == \
      first.custom_properties['model_id'].int_value


@pytest.mark.slow
def test_violated_constraint_is_not_blessed_and_not_pushed(violating_run):
  store = _store(violating_run)
  [validation] = store.get_artifacts_by_type('tfx_explain.ExplanationValidation')
  report = tfx_explain.load_validation(validation.uri)
  assert not report['blessed']
  failed = [c for c in report['checks'] if not c['passed']]
  assert failed and all(c['check'] == 'feature_share_limit' for c in failed)
  [pushed] = store.get_artifacts_by_type('PushedModel')
  assert pushed.custom_properties['pushed'].int_value == 0
  ours = [b for b in store.get_artifacts_by_type('ModelBlessing')
          if tf.io.gfile.exists(os.path.join(b.uri, 'NOT_BLESSED'))]
  assert ours


@pytest.fixture(scope='module')
def pruning_run(tmp_path_factory):
  return run_pipeline(str(tmp_path_factory.mktemp('pruning')), 'penguin-pruning',
                      include_pruning=True)


@pytest.mark.slow
def test_pruned_model_is_evaluated_against_base_and_explained(pruning_run):
  from tfx_explain.review.notebook import PipelineStore
  from tfx_explain.pipelines.penguin import run_local
  store = _store(pruning_run)
  browser = PipelineStore(pruning_run)
  pruned_uri = browser.latest_uri('Model', node='PrunedModelTrainer')
  base_uri = browser.latest_uri('Model', node='Trainer')
  [pruned] = [m for m in store.get_artifacts_by_type('Model') if m.uri == pruned_uri]
  assert abs(pruned.custom_properties['achieved_sparsity'].double_value - 0.8) <= 0.02
  assert pruned.custom_properties['distilled'].int_value == 1
  # Evaluator compared the pruned candidate with the base model and reports the change.
  evaluation = browser.latest_uri('ModelEvaluation', node='PrunedEvaluator')
  delta = run_local.evaluator_accuracy_delta(evaluation)
  examples_uri = browser.latest_uri('Examples', node='CsvExampleGen')
  expected = served_accuracy(pruned_uri, examples_uri) - served_accuracy(base_uri, examples_uri)
  assert delta == pytest.approx(expected, abs=1e-6)
  # PrunedModelTrainer measured the same change on the same split.
  assert pruned.custom_properties['accuracy_delta'].double_value == pytest.approx(
      expected, abs=1e-6)
  # Its explanations were checked against the base model's.
  validation = browser.latest_uri('tfx_explain.ExplanationValidation',
                                  node='PrunedExplanationValidator')
  report = tfx_explain.load_validation(validation)
  base_attributions = browser.latest_uri('tfx_explain.Attributions', node='AttributionGen')
  assert report['inputs']['baseline_attributions'] == base_attributions
  assert report['inputs']['model'] == pruned_uri != base_uri
  [drift] = [c for c in report['checks'] if c['check'] == 'attribution_drift'
             and c['slice'] == 'Overall' and c['details']['statistic'] == 'ndcg']
  pruned_attributions = browser.latest_uri('tfx_explain.Attributions',
                                           node='PrunedAttributionGen')
  assert drift['details']['plug_in'] == pytest.approx(overall_ndcg(
      pruned_attributions, base_attributions, drift['method'], 5))
  assert 'teacher' in drift['message']


@pytest.mark.slow
def test_beam_dag_runner_runs_the_whole_pipeline(tmp_path):
  """BeamDagRunner (the DAG as a Beam pipeline) runs every component, pruning included,
  into the same kind of store: blessings, validations and a push."""
  metadata_path = run_pipeline(str(tmp_path), 'penguin-beam', include_pruning=True,
                               orchestrator='beam')
  store = _store(metadata_path)
  executions = store.get_executions()
  assert executions and all(e.last_known_state == e.COMPLETE for e in executions)
  nodes = {store.get_execution_types_by_id([e.type_id])[0].name.rsplit('.', 1)[-1]
           for e in executions}
  assert {'AttributionGen', 'ExplanationValidator', 'PrunedModelTrainer', 'Pusher'} <= nodes, \
      nodes
  # Evaluator x2 and our validator x2: four blessings, all written.
  blessings = store.get_artifacts_by_type('ModelBlessing')
  assert len(blessings) == 4
  from tfx_explain.review.notebook import PipelineStore
  browser = PipelineStore(metadata_path)
  report = tfx_explain.load_validation(
      browser.latest_uri('tfx_explain.ExplanationValidation', node='ExplanationValidator'))
  assert report['blessed'], [c for c in report['checks'] if not c['passed']]
  # The pruned model's gate ran too (its verdict is the short fine-tune's to decide).
  pruned = tfx_explain.load_validation(browser.latest_uri(
      'tfx_explain.ExplanationValidation', node='PrunedExplanationValidator'))
  assert {c['check'] for c in pruned['checks']} >= {'attribution_drift', 'completeness'}
  [pushed] = store.get_artifacts_by_type('PushedModel')
  assert pushed.custom_properties['pushed'].int_value == 1


def test_run_local_chooses_the_orchestrator():
  from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
  from tfx_explain.pipelines import orchestrators
  from tfx_explain.pipelines.penguin import run_local
  assert isinstance(orchestrators.runner('beam'), BeamDagRunner)
  assert type(orchestrators.runner('local')).__name__ == 'LocalDagRunner'
  with pytest.raises(ValueError, match='orchestrator must be one of'):
    orchestrators.runner('airflow')
  with pytest.raises(SystemExit):
    run_local.main(['--orchestrator', 'airflow'])


@pytest.mark.slow
def test_notebook_api_over_the_store(two_runs):
  from tfx_explain.review.notebook import PipelineStore
  store = PipelineStore(two_runs)
  runs = store.runs()
  assert len(runs) == 2 and (runs['failed'] == 0).all()
  frame = store.artifacts('tfx_explain.Attributions', node='AttributionGen')
  assert len(frame) == 2 and frame['model_uri'].str.contains('Trainer').all()
  assert frame['examples_uri'].str.contains('CsvExampleGen').all()
  latest_run = runs.iloc[0]['run']
  assert store.artifacts('tfx_explain.Attributions', run=latest_run)['run'].tolist() == [latest_run]
  lineage = store.lineage(int(frame.iloc[0]['id']))
  assert set(lineage['produced_by']) >= {'Trainer', 'CsvExampleGen', 'SchemaGen'}
  table = store.load_attributions()
  assert len(table) and set(table['method']) >= {'kernel_shap'}
  checks = store.load_validation()
  assert checks.attrs['blessed'] and 'attribution_drift' in set(checks['check'])
  importance = store.load_summary().importance_frame()
  assert list(importance.columns) == ['integrated_gradients', 'kernel_shap', 'sampled_shapley']


@pytest.mark.slow
def test_every_plot_on_real_artifacts(two_runs, tmp_path):
  from tfx_explain import plots
  from tfx_explain.review.notebook import PipelineStore
  store = PipelineStore(two_runs)
  [current_uri, baseline_uri] = store.artifacts('tfx_explain.Attributions')['uri'].tolist()[:2]
  current = tfx_explain.load_summary(current_uri)
  baseline = tfx_explain.load_summary(baseline_uri)
  table = tfx_explain.load_attributions(current_uri)
  figures = [
      plots.importance_bars(current),
      plots.importance_bars(current, slice_name='island=Biscoe', normalize=False),
      plots.beeswarm(table, 'kernel_shap'),
      plots.waterfall(table, 'kernel_shap', int(table['example_index'].iloc[0])),
      plots.method_comparison(current, 'integrated_gradients', 'kernel_shap'),
      plots.baseline_comparison(current, baseline, 'kernel_shap'),
  ]
  for k, figure in enumerate(figures):
    path = tmp_path / f'{k}.png'
    figure.savefig(path)
    assert path.stat().st_size > 5000
  with pytest.raises(KeyError, match="Method 'lime'"):
    plots.beeswarm(table, 'lime')


@pytest.mark.slow
def test_example_notebook_runs_top_to_bottom(two_runs, tmp_path):
  import nbclient
  import nbformat
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  notebook = nbformat.read(os.path.join(repo, 'docs', 'explore_attributions.ipynb'), as_version=4)
  os.environ['TFX_EXPLAIN_METADATA'] = two_runs
  try:
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                                     resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
  finally:
    del os.environ['TFX_EXPLAIN_METADATA']
  errors = [o for cell in notebook.cells for o in cell.get('outputs', [])
            if o.get('output_type') == 'error']
  assert not errors
  images = [o for cell in notebook.cells for o in cell.get('outputs', [])
            if 'image/png' in o.get('data', {})]
  assert len(images) >= 4


@pytest.mark.slow
def test_stock_evaluator_computes_attribution_metrics_with_our_extractor(two_runs):
  import tensorflow_model_analysis as tfma
  from tfx_explain.review.notebook import PipelineStore
  evaluation = PipelineStore(two_runs).latest_uri('ModelEvaluation', node='Evaluator')
  overall = [a for a in tfma.load_attributions(evaluation)
             if not a.slice_key.single_slice_keys]
  assert overall
  by_name = {kv.key.name: kv.values for kv in overall[0].attributions_keys_and_values}
  assert {'mean_absolute_attributions', 'total_attributions'} <= set(by_name)
  mean_abs = {k: v.double_value.value for k, v in by_name['mean_absolute_attributions'].items()}
  floats = {'bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g'}
  # The string inputs are stepped from the batch's most frequent value: attributed too.
  assert set(mean_abs) == floats | {'island', 'sex'}
  assert all(mean_abs[f] > 0 for f in floats)
  # And TFMA's notebook view takes it.
  result = tfma.load_eval_result(evaluation)
  assert result.get_attributions_for_slice(metric_name='mean_absolute_attributions')
