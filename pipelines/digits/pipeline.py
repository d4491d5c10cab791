"""The digits pipeline: ImportExampleGen -> StatisticsGen -> SchemaGen -> Trainer (CNN) -> AttributionGen.

AttributionGen runs Grad-CAM on the last convolution and Integrated Gradients
over pixels, keeps per-example maps as float16 shards, per-digit mean maps, and
an overlay gallery (PNG) per method.
"""

from __future__ import annotations

from typing import List, Optional

from tfx import v1 as tfx

from tfx_explain import AttributionConfig, AttributionGen, GradCam, ImageIntegratedGradients
from tfx_explain.pipelines.digits.data import LABEL_KEY

TRAINER_RUN_FN = 'tfx_explain.pipelines.digits.trainer_module.run_fn'


def default_attribution_config() -> AttributionConfig:
  return AttributionConfig(
      methods=[GradCam(), ImageIntegratedGradients(steps=32, baseline='black')],
      splits=['eval'], label_key=LABEL_KEY, slicing_specs=[[], [LABEL_KEY]], batch_size=128)


def create_pipeline(pipeline_name: str, pipeline_root: str, data_root: str,
                    metadata_path: Optional[str], train_steps: int = 300,
                    attribution_config: Optional[AttributionConfig] = None,
                    beam_pipeline_args: Optional[List[str]] = None) -> tfx.dsl.Pipeline:
  example_gen = tfx.components.ImportExampleGen(input_base=data_root)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'],
                                        infer_feature_shape=True)
  trainer = tfx.components.Trainer(
      run_fn=TRAINER_RUN_FN, examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=5))
  attribution_gen = AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'],
      config=attribution_config or default_attribution_config())
  metadata_config = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                     if metadata_path else None)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name, pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, trainer, attribution_gen],
      metadata_connection_config=metadata_config,
      beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
