"""The penguin pipeline: ExampleGen -> stats/schema -> Trainer -> Evaluator, plus AttributionGen."""

from __future__ import annotations

import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from tfx_explain import AttributionConfig, AttributionGen, IntegratedGradients, KernelShap

DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
TRAINER_RUN_FN = 'tfx_explain.pipelines.penguin.trainer_module.run_fn'
LABEL_KEY = 'species'


def default_attribution_config() -> AttributionConfig:
  return AttributionConfig(
      methods=[IntegratedGradients(steps=64, baseline='mean'),
               KernelShap(num_samples=2048, background_size=50)],
      splits=['eval'], label_key=LABEL_KEY, target='predicted',
      slicing_specs=[[], ['island']])


def eval_config() -> tfma.EvalConfig:
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(label_key=LABEL_KEY, signature_name='serving_default')],
      slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['island'])],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(
              class_name='SparseCategoricalAccuracy',
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.6}))),
          tfma.MetricConfig(class_name='ExampleCount'),
      ])])


def create_pipeline(pipeline_name: str, pipeline_root: str, metadata_path: Optional[str],
                    data_root: str = DATA_ROOT, train_steps: int = 200, eval_steps: int = 5,
                    attribution_config: Optional[AttributionConfig] = None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    enable_cache: bool = False) -> tfx.dsl.Pipeline:
  example_gen = tfx.components.CsvExampleGen(input_base=data_root)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'],
                                        infer_feature_shape=True)
  trainer = tfx.components.Trainer(
      run_fn=TRAINER_RUN_FN,
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps))
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      eval_config=eval_config())
  attribution_gen = AttributionGen(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'],
      config=attribution_config or default_attribution_config())
  metadata_config = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                     if metadata_path else None)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, trainer, evaluator, attribution_gen],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_config,
      beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
