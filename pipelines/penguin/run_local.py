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
  attributions = _latest_artifact_uri(metadata_path, 'tfx_explain.Attributions')
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
  validation = _latest_artifact_uri(metadata_path, 'tfx_explain.ExplanationValidation')
  if validation:
    report = tfx_explain.load_validation(validation)
    verdict = 'BLESSED' if report['blessed'] else 'NOT_BLESSED'
    failed = [r for r in report['checks'] if not r['passed']]
    print(f'validation:      {verdict}, {len(report["checks"]) - len(failed)} of '
          f'{len(report["checks"])} checks passed; report {validation}/report.html')
    for result in failed[:5]:
      print(f'  failed: {result["check"]} [{result["slice"]}] {result["message"]}: '
            f'{result["value"]} vs {result["comparison"]} {result["threshold"]}')
  return 0


def _latest_artifact_uri(metadata_path: str, type_name: str):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))
  artifacts = store.get_artifacts_by_type(type_name)
  live = [a for a in artifacts if a.state == a.LIVE]
  return max(live, key=lambda a: a.id).uri if live else None


if __name__ == '__main__':
  sys.exit(main())
