"""Runs the penguin pipeline with LocalDagRunner (or BeamDagRunner: --orchestrator beam)
and a sqlite ML Metadata store.

    python -m tfx_explain.pipelines.penguin.run_local --run-root runs

Runs go to <run-root>/<pipeline-name> and share its metadata store, so each
run's ExplanationValidator compares against the last blessed model's
explanations; --fresh starts a new, timestamped folder.

ML Metadata is a sqlite file in the run folder unless --mysql-host is given:
then it is that MySQL/MariaDB server's database (shared by every pipeline
that uses it; the password comes from $MYSQL_PASSWORD).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


from tfx_explain.pipelines import orchestrators  # pylint: disable=g-import-not-at-top

def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--run-root', default='runs', help='folder that receives a run folder')
  parser.add_argument('--pipeline-name', default='penguin-explain')
  parser.add_argument('--train-steps', type=int, default=200)
  parser.add_argument('--fresh', action='store_true',
                      help='use a new timestamped run folder (no baseline from earlier runs)')
  parser.add_argument('--beam-arg', action='append', default=[],
                      help='a beam_pipeline_args entry, e.g. --beam-arg=--direct_num_workers=2')
  parser.add_argument('--no-pruning', action='store_true',
                      help='leave out PrunedModelTrainer and its evaluation')
  parser.add_argument('--mysql-host', help='use this MySQL/MariaDB server for ML Metadata')
  parser.add_argument('--mysql-port', type=int, default=3306)
  parser.add_argument('--mysql-database', default='mlmd')
  parser.add_argument('--mysql-user', default='root')
  orchestrators.add_argument(parser)
  args = parser.parse_args(argv)

  from absl import logging  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  import tfx_explain  # pylint: disable=g-import-not-at-top
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.penguin import pipeline as penguin  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)
  folder = args.pipeline_name
  if args.fresh:
    folder += datetime.datetime.now().strftime('-%Y%m%d-%H%M%S')
  run_dir = os.path.abspath(os.path.join(args.run_root, folder))
  pipeline_root = os.path.join(run_dir, 'pipeline_root')
  metadata_path = os.path.join(run_dir, 'metadata.sqlite')
  connection_config = None
  if args.mysql_host:
    connection_config = tfx.orchestration.metadata.mysql_metadata_connection_config(
        host=args.mysql_host, port=args.mysql_port, database=args.mysql_database,
        username=args.mysql_user, password=os.environ.get('MYSQL_PASSWORD', ''))
  os.makedirs(run_dir, exist_ok=True)
  print(f'run folder:      {run_dir}')
  orchestrators.runner(args.orchestrator).run(penguin.create_pipeline(
      args.pipeline_name, pipeline_root, metadata_path, train_steps=args.train_steps,
      include_pruning=not args.no_pruning, beam_pipeline_args=args.beam_arg or None,
      metadata_connection_config=connection_config))

  print(f'pipeline root:   {pipeline_root}')
  if connection_config is not None:
    print(f'metadata store:  mysql://{args.mysql_host}:{args.mysql_port}/{args.mysql_database}')
  else:
    print(f'metadata store:  {metadata_path} (sqlite ML Metadata)')
  store = PipelineStore(connection_config or metadata_path)
  latest = functools.partial(store.latest_uri, pipeline=args.pipeline_name)
  attributions = latest('tfx_explain.Attributions', node='AttributionGen')
  if attributions:
    summary = tfx_explain.load_summary(attributions, 'eval')
    print(f'attributions:    {attributions}')
    print(f'  {summary.examples} eval examples, {summary.examples_per_second:.0f} examples/s')
    for method, info in summary.methods.items():
      overall = summary.overall.methods[method]
      top = ', '.join(f'{name} {overall.mean_absolute_attribution[name]:.3f}'
                      for name in overall.ranking[:4])
      error = info.absolute_completeness_error
      error_text = f'; completeness error p95 {error.p95:.2e}' if error else ''
      print(f'  {method}: mean |attribution| {top}{error_text}')
  validation = latest('tfx_explain.ExplanationValidation', node='ExplanationValidator')
  if validation:
    report = tfx_explain.load_validation(validation)
    verdict = 'BLESSED' if report['blessed'] else 'NOT_BLESSED'
    failed = [r for r in report['checks'] if not r['passed']]
    print(f'validation:      {verdict}, {len(report["checks"]) - len(failed)} of '
          f'{len(report["checks"])} checks passed; report {validation}/report.html')
    for result in _headline_checks(report['checks']):
      print(f'  {_check_line(result)}')
    for result in failed[:5]:
      print(f'  failed: {result["check"]} [{result["slice"]}] {result["message"]}: '
            f'{result["value"]} vs {result["comparison"]} {result["threshold"]}')
  _print_compression(latest)
  return 0


def _print_compression(latest):
  import json  # pylint: disable=g-import-not-at-top
  pruned = latest('Model', node='PrunedModelTrainer')
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
  evaluation = latest('ModelEvaluation', node='PrunedEvaluator')
  if evaluation:
    delta = evaluator_accuracy_delta(evaluation)
    if delta is not None:
      print(f'  Evaluator (pruned vs base): accuracy change {delta:+.4f}')
  validation = latest('tfx_explain.ExplanationValidation', node='PrunedExplanationValidator')
  if validation:
    import tfx_explain  # pylint: disable=g-import-not-at-top
    report = tfx_explain.load_validation(validation)
    drift = [c for c in report['checks'] if c['check'] == 'attribution_drift'
             and c['slice'] == 'Overall' and c['value'] is not None]
    if drift:
      print(f"  explains like its teacher: kernel_shap nDCG@5 {drift[0]['value']:.2f} "
            f"[{drift[0]['lower']:.2f}, {drift[0]['upper']:.2f}] overall; pruned model "
            f"{'BLESSED' if report['blessed'] else 'NOT_BLESSED'}")
    for result in [r for r in report['checks'] if not r['passed']][:5]:
      print(f'  failed: {result["check"]} [{result["slice"]}] {result["message"]}: '
            f'{result["value"]} vs {result["comparison"]} {result["threshold"]}')


def _headline_checks(checks):
  """The Overall result of each drift, skew, faithfulness and randomisation check."""
  wanted = ('attribution_drift', 'attribution_skew', 'faithfulness_deletion',
            'faithfulness_insertion', 'model_randomization')
  return [c for c in checks if c['check'] in wanted and c['slice'] == 'Overall'
          and c['feature'] is None and c['value'] is not None]


def _check_line(result) -> str:
  interval = (f" [{result['lower']:.2f}, {result['upper']:.2f}]"
              if result.get('lower') is not None else '')
  what = result['details'].get('statistic', '') if result.get('details') else ''
  stages = (result.get('details') or {}).get('stages')
  if stages:
    what = 'per stage ' + ' '.join(f"{s['similarity']:.2f}" for s in stages
                                   if s.get('similarity') is not None)
  return (f"{'pass' if result['passed'] else 'FAIL'} {result['check']} {result['method']} "
          f"{what}: {result['value']:.2f}{interval} {result['comparison']} "
          f"{result['threshold']:g}")


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


if __name__ == '__main__':
  sys.exit(main())
