"""Runs the digits pipeline with LocalDagRunner (or BeamDagRunner: --orchestrator beam)
and a sqlite ML Metadata store.

    python -m tfx_explain.pipelines.digits.run_local --run-root runs
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


from tfx_explain.pipelines import orchestrators  # pylint: disable=g-import-not-at-top

def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--run-root', default='runs')
  parser.add_argument('--pipeline-name', default='digits-explain')
  parser.add_argument('--train-steps', type=int, default=300)
  orchestrators.add_argument(parser)
  args = parser.parse_args(argv)

  from absl import logging  # pylint: disable=g-import-not-at-top
  import tfx_explain  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.digits import data, pipeline  # pylint: disable=g-import-not-at-top
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)
  run_dir = os.path.abspath(os.path.join(args.run_root, args.pipeline_name))
  data_root = os.path.join(run_dir, 'data')
  if not os.path.exists(os.path.join(data_root, 'digits.tfrecord')):
    data.write_digits_examples(data_root)
  metadata_path = os.path.join(run_dir, 'metadata.sqlite')
  print(f'run folder:      {run_dir}')
  orchestrators.runner(args.orchestrator).run(pipeline.create_pipeline(
      args.pipeline_name, os.path.join(run_dir, 'pipeline_root'), data_root, metadata_path,
      train_steps=args.train_steps))
  print(f'metadata store:  {metadata_path} (sqlite ML Metadata)')
  attributions = PipelineStore(metadata_path).latest_uri('tfx_explain.Attributions')
  summary = tfx_explain.load_summary(attributions, 'eval')
  print(f'attributions:    {attributions}')
  print(f"  {summary.examples} eval images; maps in Split-eval/maps, per-digit mean maps in "
        'Split-eval/mean_maps.npz')
  for method, info in summary.methods.items():
    error = info.relative_completeness_error
    error_text = f', relative completeness error p95 {error.p95:.3f}' if error else ''
    print(f'  {method}: gallery {attributions}/Split-eval/gallery/{method}.png{error_text}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
