"""Compiles the penguin pipeline, with our components, for Kubeflow Pipelines v2.

    python -m tfx_explain.kubeflow.runner \\
        --image REGISTRY/tfx-explain:0.1.0 --pipeline-root gs://BUCKET/tfx-explain \\
        --output-dir build/

writes `penguin-explain.yaml` (a PipelineSpec for open-source KFP v2: upload it
in the UI or with `kfp`'s client) and `penguin-explain.json` (a PipelineJob for
Vertex AI Pipelines). Every step runs in `--image`, built from the Dockerfile
beside this module, which holds this package, the trainer module and the data.

Kubeflow V2 compiles only TFX's own resolver strategies, so this build has no
stability baseline from the last blessed model (the stability check then
reports "no baseline"; the pruned model is still compared with its teacher).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

PIPELINE_NAME = 'penguin-explain'
DEFAULT_IMAGE = 'tfx-explain:0.1.0'
# Where the Dockerfile puts the repository; the penguin CSV is read from here.
CONTAINER_REPO = '/tfx-explain'
CONTAINER_DATA_ROOT = CONTAINER_REPO + '/pipelines/penguin/data'
# One container per step: use every core it is given, in separate processes.
DEFAULT_BEAM_ARGS = ['--direct_running_mode=multi_processing', '--direct_num_workers=0']


def create_pipeline(pipeline_root: str, data_root: str = CONTAINER_DATA_ROOT,
                    pipeline_name: str = PIPELINE_NAME,
                    beam_pipeline_args: Optional[List[str]] = None,
                    include_pruning: bool = True, train_steps: int = 200,
                    serving_model_dir: Optional[str] = None):
  """The penguin pipeline as it runs on Kubeflow: no local metadata, no custom resolver."""
  from tfx_explain.pipelines.penguin import pipeline as penguin  # pylint: disable=g-import-not-at-top
  return penguin.create_pipeline(
      pipeline_name, pipeline_root, metadata_path=None, data_root=data_root,
      train_steps=train_steps, include_pruning=include_pruning,
      serving_model_dir=serving_model_dir,
      beam_pipeline_args=beam_pipeline_args or list(DEFAULT_BEAM_ARGS),
      stability_baseline=False)


def compile_pipeline(pipeline, output_dir: str, image: str = DEFAULT_IMAGE,
                     formats=('yaml', 'json')) -> Dict[str, str]:
  """Writes the pipeline as `<name>.yaml` (PipelineSpec) and/or `<name>.json` (PipelineJob)."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  paths = {}
  for file_format in formats:
    if file_format not in ('yaml', 'json'):
      raise ValueError(f'format must be "yaml" or "json", got {file_format!r}')
    filename = f'{pipeline.pipeline_info.pipeline_name}.{file_format}'
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True),
        output_dir=output_dir, output_filename=filename)
    runner.run(pipeline, write_out=True)
    paths[file_format] = os.path.join(output_dir, filename)
  return paths


def main(argv=None, prog=None) -> int:
  parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--image', default=DEFAULT_IMAGE,
                      help='container image every step runs in (built from kubeflow/Dockerfile)')
  parser.add_argument('--pipeline-root', required=True,
                      help='where artifacts go, e.g. gs://BUCKET/tfx-explain or minio://...')
  parser.add_argument('--data-root', default=CONTAINER_DATA_ROOT,
                      help='folder of penguin CSVs as seen from the container '
                           '(default: the copy inside the image)')
  parser.add_argument('--output-dir', default='.', help='where the compiled files go')
  parser.add_argument('--pipeline-name', default=PIPELINE_NAME)
  parser.add_argument('--format', choices=['yaml', 'json', 'both'], default='both')
  parser.add_argument('--no-pruning', action='store_true',
                      help='leave out PrunedModelTrainer and its evaluation')
  parser.add_argument('--serving-model-dir', default=None,
                      help='Pusher destination (default: <pipeline-root>/serving_model)')
  parser.add_argument('--beam-arg', action='append', default=[],
                      help='a beam_pipeline_args entry, repeatable, e.g. --beam-arg=--runner=DataflowRunner '
                           f'(default: {" ".join(DEFAULT_BEAM_ARGS)})')
  args = parser.parse_args(argv)

  pipeline = create_pipeline(args.pipeline_root, data_root=args.data_root,
                             pipeline_name=args.pipeline_name, beam_pipeline_args=args.beam_arg,
                             include_pruning=not args.no_pruning,
                             serving_model_dir=args.serving_model_dir)
  formats = ('yaml', 'json') if args.format == 'both' else (args.format,)
  for path in compile_pipeline(pipeline, args.output_dir, image=args.image,
                               formats=formats).values():
    print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
