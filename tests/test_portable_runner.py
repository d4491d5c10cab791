"""Our Beam work through Beam's portable job API, run by SDK workers in separate processes.

The way Flink, Spark and Dataflow runner v2 run Python, on loopback: Beam's
job service takes the job, a separate worker pool (EXTERNAL environment)
starts the SDK worker processes that run our DoFns (tests/portable_beam.py).
"""

import os

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import tfx_explain
from tests import portable_beam as services
from tests.test_attribution_gen_executor import run_executor

portable_beam = services.portable_beam   # the module's fixture: the services, started once
WorkerWatch = services.WorkerWatch


def _pid(_):
  return os.getpid()


def test_dofns_run_in_the_pools_worker_processes(portable_beam, tmp_path):
  # Each element records the process it was mapped in: the pool's children, not this one.
  prefix = str(tmp_path / 'pids')
  with WorkerWatch(portable_beam.pool.pid) as watch:
    with beam.Pipeline(options=PipelineOptions(portable_beam.beam_args)) as pipeline:
      _ = (pipeline | beam.Create(range(8)) | beam.Map(_pid)
           | beam.io.WriteToText(prefix, shard_name_template=''))
  with open(prefix) as f:
    pids = {int(line) for line in f}
  assert pids and os.getpid() not in pids
  assert pids <= set(watch.workers), (pids, watch.workers, portable_beam.logs())
  assert all('SdkHarness' in watch.workers[pid]['cmdline'] for pid in pids)
  assert 'Starting worker with command' in portable_beam.pool_output()


def _sorted_table(uri):
  frame = tfx_explain.load_attributions(uri, 'eval')
  return frame.sort_values(['method', 'example_index']).reset_index(drop=True)


def _flat(value, path=()):
  """A nested dict / list as {path: leaf}, so pytest.approx can compare it."""
  if isinstance(value, dict):
    return {k: v for key, item in value.items() for k, v in _flat(item, path + (key,)).items()}
  if isinstance(value, list):
    return {k: v for i, item in enumerate(value) for k, v in _flat(item, path + (i,)).items()}
  return {path: value}


def test_attribution_gen_through_the_job_service_equals_the_direct_runner(
    penguin_artifacts, penguin_run, portable_beam, tmp_path):
  direct, config = penguin_run
  jobs_before = len(portable_beam.jobs())
  own_cpu = sum(os.times()[:2])
  with WorkerWatch(portable_beam.pool.pid) as watch:
    portable = run_executor(penguin_artifacts, str(tmp_path / 'out'), config,
                            beam_args=portable_beam.beam_args)
  own_cpu = sum(os.times()[:2]) - own_cpu

  # One job, through the job API, with the label TFX gives executors not its own.
  [(state, labels)] = portable_beam.jobs()[jobs_before:]
  assert state == 'DONE'
  assert 'tfx_executor=third_party_executor' in labels, labels
  # Its DoFns ran in the pool's SDK worker processes: TensorFlow (the explaining
  # DoFns') loaded there, and they did more computing than this process.
  assert watch.workers, portable_beam.logs()
  assert all('SdkHarness' in w['cmdline'] for w in watch.workers.values()), watch.workers
  assert any(w['tensorflow'] for w in watch.workers.values()), watch.workers
  assert sum(w['cpu_seconds'] for w in watch.workers.values()) > own_cpu, (watch.workers,
                                                                           own_cpu)

  # The table is the DirectRunner's, value for value: each example's attributions are
  # computed alike wherever they run, from per-example seeds.
  expected, found = _sorted_table(direct.uri), _sorted_table(portable.uri)
  assert len(found) == len(config.methods) * len(penguin_artifacts.splits['eval'])
  pd.testing.assert_frame_equal(expected, found, check_exact=True)
  # The summary too (importances per slice and method, quantiles, counts); the timings
  # differ.
  summaries = [tfx_explain.load_summary(uri, 'eval').to_dict() for uri in (direct.uri,
                                                                          portable.uri)]
  for summary in summaries:
    del summary['compute_seconds'], summary['examples_per_second']
  expected, found = (_flat(s) for s in summaries)
  assert sorted(found) == sorted(expected)
  floats = [k for k, v in expected.items() if isinstance(v, float)]
  assert len(floats) > 50
  assert {k: found[k] for k in floats} == pytest.approx({k: expected[k] for k in floats},
                                                         rel=1e-9, abs=1e-15)
  assert {k: v for k, v in found.items() if k not in floats} == {
      k: v for k, v in expected.items() if k not in floats}
  direct_summary = tfx_explain.load_summary(direct.uri, 'eval')
  portable_summary = tfx_explain.load_summary(portable.uri, 'eval')
  for name in direct_summary.slice_names:
    for method in direct_summary.methods:
      np.testing.assert_allclose(
          pd.Series(portable_summary.importance(method, name)).sort_index(),
          pd.Series(direct_summary.importance(method, name)).sort_index(), rtol=1e-9)

  # What was staged for the workers: TFX's sdist of its own source, not our package
  # (the workers share this environment, and the pool installs nothing it is sent).
  staged = [name for _, _, files in os.walk(portable_beam.staging_dir) for name in files]
  assert any('tfx_ephemeral' in name for name in staged), staged
  assert not any('explain' in name for name in staged), staged


# TFX's label for each Beam job (--labels tfx_executor=...) -> the pipeline's nodes that
# run one; executors outside TFX are all 'third_party_executor'.
BEAM_JOBS = {
    'tfx-components-example_gen-csv_example_gen-executor-executor': ['CsvExampleGen'],
    'tfx-components-statistics_gen-executor-executor': ['StatisticsGen'],
    'tfx-components-evaluator-executor-executor': ['Evaluator', 'PrunedEvaluator'],
    'third_party_executor': ['AttributionGen', 'PrunedAttributionGen'],
}


@pytest.mark.slow
def test_whole_penguin_pipeline_with_every_beam_component_on_the_job_service(portable_beam,
                                                                              tmp_path):
  """LocalDagRunner, pruning included, beam_pipeline_args at the job service: TFX's
  ExampleGen, StatisticsGen and Evaluators and our AttributionGens each submit their Beam
  job there (the ExplanationValidators' tables are too small for Beam)."""
  from ml_metadata.metadata_store import metadata_store
  from tfx.orchestration import metadata
  from tfx_explain import AttributionConfig, Distillation, PruningConfig
  from tfx_explain.pipelines import orchestrators
  from tfx_explain.pipelines.penguin import pipeline as penguin
  from tfx_explain.review.notebook import PipelineStore
  from tests.test_penguin_pipeline import ATTRIBUTION_CONFIG, PASSING_CHECKS
  metadata_path = str(tmp_path / 'metadata.sqlite')
  jobs_before = len(portable_beam.jobs())
  with WorkerWatch(portable_beam.pool.pid) as watch:
    # As tests/test_penguin_pipeline.py's run_pipeline, with the portable runner's arguments.
    orchestrators.runner('local').run(penguin.create_pipeline(
        'penguin-portable', str(tmp_path / 'pipeline_root'), metadata_path, train_steps=60,
        attribution_config=AttributionConfig(**ATTRIBUTION_CONFIG),
        validation_config=PASSING_CHECKS, include_pruning=True,
        pruning_config=PruningConfig(target_sparsity=0.8, fine_tune_steps=100,
                                     label_key='species', learning_rate=3e-3,
                                     distillation=Distillation(temperature=2.0, alpha=0.5)),
        beam_pipeline_args=portable_beam.beam_args))

  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))
  executions = store.get_executions()
  assert executions and all(e.last_known_state == e.COMPLETE for e in executions)
  # Every Beam job of the run went through the job API and finished; one per node that
  # runs Beam, in the order LocalDagRunner ran them.
  jobs = portable_beam.jobs()[jobs_before:]
  assert all(state == 'DONE' for state, _ in jobs), jobs
  executors = [label.split('=', 1)[1] for _, labels in jobs for label in labels
               if label.startswith('tfx_executor=')]
  assert sorted(executors) == sorted(k for k, nodes in BEAM_JOBS.items() for _ in nodes), jobs
  # Each job had its own SDK worker process from the pool, running TensorFlow.
  assert len(watch.workers) >= len(jobs), watch.workers
  assert all('SdkHarness' in w['cmdline'] and w['tensorflow']
             for w in watch.workers.values()), watch.workers

  # Blessed and pushed as on LocalDagRunner's default runner: the Evaluators bless, the
  # gate blesses, Pusher pushes. The compressed model's gate ran its checks against the
  # teacher; whether it passes depends on how the pruned model trained, not on the runner
  # (tests/test_penguin_pipeline.py does not require it either).
  browser = PipelineStore(metadata_path)
  for node in ('Evaluator', 'PrunedEvaluator', 'ExplanationValidator'):
    assert os.path.exists(os.path.join(browser.latest_uri('ModelBlessing', node=node),
                                       'BLESSED')), node
  report = tfx_explain.load_validation(
      browser.latest_uri('tfx_explain.ExplanationValidation', node='ExplanationValidator'))
  assert report['blessed'], [c for c in report['checks'] if not c['passed']]
  pruned_report = tfx_explain.load_validation(browser.latest_uri(
      'tfx_explain.ExplanationValidation', node='PrunedExplanationValidator'))
  assert any('teacher' in c['message'] for c in pruned_report['checks']
             if c['check'] == 'attribution_drift')
  [pushed] = store.get_artifacts_by_type('PushedModel')
  assert pushed.custom_properties['pushed'].int_value == 1
  attributions = store.get_artifacts_by_type('tfx_explain.Attributions')
  assert len(attributions) == 2
  for artifact in attributions:
    frame = tfx_explain.load_attributions(artifact.uri)
    assert set(frame['method']) == {'integrated_gradients', 'kernel_shap', 'sampled_shapley'}
    assert len(frame) == 3 * artifact.custom_properties['eval_example_count'].int_value
