"""Runs the penguin pipeline with LocalDagRunner and a sqlite ML Metadata store.

    python -m tfx_explain.pipelines.penguin.run_local --run-root runs

Runs go to <run-root>/<pipeline-name> and share its metadata store, so each
run's ExplanationValidator compares against the last blessed model's
explanations; --fresh starts a new, timestamped folder.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--run-root', default='runs', help='folder that receives a run folder')
  parser.add_argument('--pipeline-name', default='penguin-explain')
  parser.add_argument('--train-steps', type=int, default=200)
  parser.add_argument('--fresh', action='store_true',
                      help='use a new timestamped run folder (no baseline from earlier runs)')
  parser.add_argument('--beam-arg', action='append', default=[],
                      help='a beam_pipeline_args entry, e.g. --beam-arg=--direct_num_workers=2')
  args = parser.parse_args(argv)

  from absl import logging  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  import tfx_explain  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.penguin import pipeline as penguin  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)
  folder = args.pipeline_name
  if args.fresh:
    folder += datetime.datetime.now().strftime('-%Y%m%d-%H%M%S')
  run_dir = os.path.abspath(os.path.join(args.run_root, folder))
  pipeline_root = os.path.join(run_dir, 'pipeline_root')
  metadata_path = os.path.join(run_dir, 'metadata.sqlite')
  os.makedirs(run_dir, exist_ok=True)
  print(f'run folder:      {run_dir}')
  tfx.orchestration.LocalDagRunner().run(penguin.create_pipeline(
      args.pipeline_name, pipeline_root, metadata_path, train_steps=args.train_steps,
      beam_pipeline_args=args.beam_arg or None))

  print(f'pipeline root:   {pipeline_root}')
  print(f'metadata store:  {metadata_path} (sqlite ML Metadata)')
  attributions = _latest_artifact_uri(metadata_path, 'tfx_explain.Attributions',
                                      producer='AttributionGen')
  if attributions:
    summary = tfx_explain.load_summary(attributions, 'eval')
    print(f'attributions:    {attributions}')
    print(f"  {summary['examples']} eval examples, {summary['examples_per_second']:.0f} examples/s")
    for method, info in summary['methods'].items():
      overall = summary['slices'][0]['methods'][method]
      top = ', '.join(f'{name} {overall["mean_absolute_attribution"][name]:.3f}'
                      for name in overall['ranking'][:4])
      error = info.get('absolute_completeness_error')
      error_text = f"; completeness error p95 {error['p95']:.2e}" if error else ''
      print(f'  {method}: mean |attribution| {top}{error_text}')
  validation = _latest_artifact_uri(metadata_path, 'tfx_explain.ExplanationValidation',
                                    producer='ExplanationValidator')
  if validation:
    report = tfx_explain.load_validation(validation)
    verdict = 'BLESSED' if report['blessed'] else 'NOT_BLESSED'
    failed = [r for r in report['checks'] if not r['passed']]
    print(f'validation:      {verdict}, {len(report["checks"]) - len(failed)} of '
          f'{len(report["checks"])} checks passed; report {validation}/report.html')
    for result in failed[:5]:
      print(f'  failed: {result["check"]} [{result["slice"]}] {result["message"]}: '
            f'{result["value"]} vs {result["comparison"]} {result["threshold"]}')
  _print_compression(metadata_path)
  return 0


def _print_compression(metadata_path: str):
  import json  # pylint: disable=g-import-not-at-top
  pruned = _latest_artifact_uri(metadata_path, 'Model', producer='PrunedModelTrainer')
  if not pruned:
    return
  with open(os.path.join(pruned, 'pruning_report.json')) as f:
    report = json.load(f)
  print(f"pruned model:    {pruned}")
  print(f"  sparsity {report['achieved_sparsity']:.3f} (target {report['target_sparsity']}), "
        f"{report['nonzero_parameters']}/{report['total_parameters']} non-zero parameters, "
        f"gzip {report['base_gzip_bytes']} -> {report['pruned_gzip_bytes']} bytes")
  print(f"  eval accuracy {report['base']['eval_accuracy']:.4f} -> "
        f"{report['pruned']['eval_accuracy']:.4f} (delta {report['accuracy_delta']:+.4f})")
  evaluation = _latest_artifact_uri(metadata_path, 'ModelEvaluation', producer='PrunedEvaluator')
  if evaluation:
    delta = evaluator_accuracy_delta(evaluation)
    if delta is not None:
      print(f'  Evaluator (pruned vs base): accuracy change {delta:+.4f}')
  validation = _latest_artifact_uri(metadata_path, 'tfx_explain.ExplanationValidation',
                                    producer='PrunedExplanationValidator')
  if validation:
    import tfx_explain  # pylint: disable=g-import-not-at-top
    report = tfx_explain.load_validation(validation)
    stability = [c for c in report['checks'] if c['check'] == 'stability'
                 and c['slice'] == 'Overall']
    if stability and stability[0]['value'] is not None:
      print(f"  explains like its teacher: kernel_shap rank correlation "
            f"{stability[0]['value']:.2f} overall; pruned model "
            f"{'BLESSED' if report['blessed'] else 'NOT_BLESSED'}")
    for result in [r for r in report['checks'] if not r['passed']][:5]:
      print(f'  failed: {result["check"]} [{result["slice"]}] {result["message"]}: '
            f'{result["value"]} vs {result["comparison"]} {result["threshold"]}')


def evaluator_accuracy_delta(evaluation_uri: str):
  """Candidate-minus-baseline accuracy from an Evaluator run with a baseline model."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  for metrics in tfma.load_metrics(evaluation_uri):
    if metrics.slice_key.single_slice_keys:
      continue
    for kv in metrics.metric_keys_and_values:
      if kv.key.name == 'sparse_categorical_accuracy' and kv.key.is_diff:
        return kv.value.double_value.value
  return None


def _latest_artifact_uri(metadata_path: str, type_name: str, producer=None):
  """URI of the newest LIVE artifact of a type, optionally from one pipeline node."""
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))
  live = [a for a in store.get_artifacts_by_type(type_name) if a.state == a.LIVE]
  if producer is not None:
    live = [a for a in live if _producer(store, a) == producer]
  return max(live, key=lambda a: a.id).uri if live else None


def _producer(store, artifact) -> str:
  """Id of the pipeline node that wrote an artifact (from its execution's 'node' context)."""
  events = [e for e in store.get_events_by_artifact_ids([artifact.id]) if e.type == e.OUTPUT]
  if not events:
    return ''
  for context in store.get_contexts_by_execution(events[0].execution_id):
    if store.get_context_types_by_id([context.type_id])[0].name == 'node':
      return context.name.split('.', 1)[-1]
  return ''


if __name__ == '__main__':
  sys.exit(main())
