"""Runs the {{PIPELINE_NAME}} pipeline on this machine: python local_runner.py

Outputs go to tfx_pipeline_output/, ML Metadata to tfx_metadata/ (sqlite).
Every run shares that store, so caching reuses unchanged steps and the
explanation gate compares each model with the last one it blessed.
"""

import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PROJECT_DIR)   # Trainer imports models.model by module path

from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top,wrong-import-position

from pipeline import configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

OUTPUT_DIR = os.path.join(PROJECT_DIR, 'tfx_pipeline_output')
PIPELINE_ROOT = os.path.join(OUTPUT_DIR, configs.PIPELINE_NAME)
SERVING_MODEL_DIR = os.path.join(PIPELINE_ROOT, 'serving_model')
METADATA_PATH = os.path.join(PROJECT_DIR, 'tfx_metadata', configs.PIPELINE_NAME, 'metadata.db')


def run():
  tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(
      pipeline_name=configs.PIPELINE_NAME, pipeline_root=PIPELINE_ROOT,
      data_path=configs.DATA_PATH, run_fn=configs.RUN_FN, label_key=configs.LABEL_KEY,
      train_steps=configs.TRAIN_NUM_STEPS, eval_steps=configs.EVAL_NUM_STEPS,
      min_accuracy=configs.MIN_ACCURACY,
      attribution_config=configs.ATTRIBUTION_CONFIG,
      validation_config=configs.VALIDATION_CONFIG,
      serving_model_dir=SERVING_MODEL_DIR,
      pruning_config=configs.PRUNING_CONFIG if configs.ENABLE_PRUNING else None,
      max_pruned_accuracy_drop=configs.MAX_PRUNED_ACCURACY_DROP,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          METADATA_PATH),
      beam_pipeline_args=configs.BEAM_PIPELINE_ARGS))
  print(f'pipeline root:  {PIPELINE_ROOT}')
  print(f'metadata store: {METADATA_PATH}')
  print(f'pushed models:  {SERVING_MODEL_DIR}')


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  run()
