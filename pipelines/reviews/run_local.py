"""Runs the reviews pipeline (TFX's imdb example with our components) with LocalDagRunner
(or BeamDagRunner: --orchestrator beam) and a sqlite ML Metadata store.

    python -m tfx_explain.pipelines.reviews.run_local --run-root runs
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
  parser.add_argument('--pipeline-name', default='reviews-explain')
  parser.add_argument('--train-steps', type=int, default=400)
  orchestrators.add_argument(parser)
  args = parser.parse_args(argv)

  from absl import logging  # pylint: disable=g-import-not-at-top
  import tfx_explain  # pylint: disable=g-import-not-at-top
  from tfx_explain.pipelines.reviews import data, pipeline  # pylint: disable=g-import-not-at-top
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)
  run_dir = os.path.abspath(os.path.join(args.run_root, args.pipeline_name))
  data_root = os.path.join(run_dir, 'data')
  if not os.path.exists(os.path.join(data_root, data.REVIEWS_FILE)):
    data.write_reviews(data_root)
  metadata_path = os.path.join(run_dir, 'metadata.sqlite')
  print(f'run folder:      {run_dir}')
  orchestrators.runner(args.orchestrator).run(pipeline.create_pipeline(
      args.pipeline_name, os.path.join(run_dir, 'pipeline_root'), data_root, metadata_path,
      os.path.join(run_dir, 'serving_model'), train_steps=args.train_steps))
  store = PipelineStore(metadata_path)
  attributions = store.latest_uri('tfx_explain.Attributions')
  blessing = store.latest_uri('ModelBlessing', 'ExplanationValidator')
  print(f'metadata store:  {metadata_path} (sqlite ML Metadata)')
  print(f'attributions:    {attributions} (report: {attributions}/report.html)')
  for method in ('token_shap', 'token_integrated_gradients'):
    words = tfx_explain.load_token_summary(attributions, 'eval', method=method,
                                           slice_name='Overall')
    words = words[words['count'] >= 2].head(8)
    print(f'  {method} top words: ' + ', '.join(
        f'{w} ({v:+.2f})' for w, v in zip(words['token'], words['mean_attribution'])))
  blessed = os.path.exists(os.path.join(blessing, 'BLESSED'))
  print(f"blessing:        {'BLESSED' if blessed else 'NOT BLESSED'} ({blessing})")
  return 0


if __name__ == '__main__':
  sys.exit(main())
