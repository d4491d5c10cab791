"""Compiles the {{PIPELINE_NAME}} pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

    docker build -t $PIPELINE_IMAGE . && docker push $PIPELINE_IMAGE
    python kubeflow_v2_runner.py            # writes {{PIPELINE_NAME}}.yaml and .json

Upload the YAML to a Kubeflow Pipelines v2 cluster, or submit the JSON to
Vertex AI Pipelines. Steps run in PIPELINE_IMAGE (this project's Dockerfile),
which holds the project at /pipeline, its data included. Kubeflow V2 compiles
only TFX's own resolvers, so this build has no stability baseline.
"""

import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PROJECT_DIR)

from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top,wrong-import-position

from pipeline import configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

PIPELINE_ROOT = f'gs://{configs.GCS_BUCKET_NAME}/tfx_pipeline_output/{configs.PIPELINE_NAME}'
# Where the Dockerfile copies the project.
CONTAINER_DATA_PATH = '/pipeline/data'


def run(output_dir: str = PROJECT_DIR):
  dag = pipeline.create_pipeline(
      pipeline_name=configs.PIPELINE_NAME, pipeline_root=PIPELINE_ROOT,
      data_path=CONTAINER_DATA_PATH, run_fn=configs.RUN_FN, label_key=configs.LABEL_KEY,
      train_steps=configs.TRAIN_NUM_STEPS, eval_steps=configs.EVAL_NUM_STEPS,
      min_accuracy=configs.MIN_ACCURACY,
      attribution_config=configs.ATTRIBUTION_CONFIG,
      validation_config=configs.VALIDATION_CONFIG,
      serving_model_dir=os.path.join(PIPELINE_ROOT, 'serving_model'),
      pruning_config=configs.PRUNING_CONFIG if configs.ENABLE_PRUNING else None,
      max_pruned_accuracy_drop=configs.MAX_PRUNED_ACCURACY_DROP,
      stability_baseline=False,
      beam_pipeline_args=configs.KUBEFLOW_BEAM_PIPELINE_ARGS)
  for extension in ('yaml', 'json'):
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=configs.PIPELINE_IMAGE, use_pipeline_spec_2_1=True),
        output_dir=output_dir,
        output_filename=f'{configs.PIPELINE_NAME}.{extension}').run(dag)
    print(os.path.join(output_dir, f'{configs.PIPELINE_NAME}.{extension}'))


if __name__ == '__main__':
  run(sys.argv[1] if len(sys.argv) > 1 else PROJECT_DIR)
