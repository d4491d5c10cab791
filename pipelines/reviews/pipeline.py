"""The reviews pipeline: TFX's own imdb example with our components after its Trainer.

    CsvExampleGen (label,text; 9:1 train/eval) -> StatisticsGen -> SchemaGen -> Transform
      -> Trainer (tfx/examples/imdb/imdb_utils_native_keras.py: vocabulary, Embedding,
         bidirectional LSTM, logit)
      -> AttributionGen (TokenShap, TokenIntegratedGradients; per word, per label)
      -> ExplanationValidator (completeness, the planted words on top) -> Pusher

The Trainer and Transform run TFX's module as the installed tfx package ships
it; nothing of it is ours.
"""

from __future__ import annotations

import os
from typing import List, Optional

from tfx import v1 as tfx

from tfx_explain import (AttributionConfig, AttributionGen, CompletenessCheck,
                         ExplanationValidator, TokenIntegratedGradients, TokenShap, TopKTokens,
                         ValidationConfig)
from tfx_explain.pipelines import tfx_wiring

LABEL_KEY = 'label'
IMDB_MODULE = 'imdb_utils_native_keras.py'


def imdb_module_file() -> str:
  """TFX's imdb trainer and Transform module, in the installed tfx package."""
  import tfx as tfx_package  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(tfx_package.__file__), 'examples', 'imdb', IMDB_MODULE)


def default_attribution_config() -> AttributionConfig:
  return AttributionConfig(
      methods=[TokenShap(num_samples=128), TokenIntegratedGradients(steps=24)],
      splits=['eval'], label_key=LABEL_KEY, slicing_specs=[[], [LABEL_KEY]])


def default_validation_config() -> ValidationConfig:
  return ValidationConfig(checks=[
      CompletenessCheck(method='token_integrated_gradients', max_relative_error_p95=0.05,
                        per_slice=False),
      TopKTokens(k=6, required=['awful', 'superb'], forbidden=['the', 'a'],
                 method='token_shap')])


def base_components(data_root: str, module_file: str, train_steps: int = 400):
  """tfx/examples/imdb's pipeline up to its Trainer, wired as its native Keras pipeline is."""
  example_gen = tfx.components.CsvExampleGen(
      input_base=data_root, output_config=tfx.proto.Output(
          split_config=tfx.proto.SplitConfig(splits=[
              tfx.proto.SplitConfig.Split(name='train', hash_buckets=9),
              tfx.proto.SplitConfig.Split(name='eval', hash_buckets=1)])))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'],
                                        infer_feature_shape=True)
  transform, trainer = tfx_wiring.transform_and_trainer(example_gen, schema_gen, module_file,
                                                        train_steps, eval_steps=10)
  return example_gen, statistics_gen, schema_gen, transform, trainer


def create_pipeline(pipeline_name: str, pipeline_root: str, data_root: str,
                    metadata_path: Optional[str], serving_dir: str, train_steps: int = 400,
                    module_file: Optional[str] = None,
                    attribution_config: Optional[AttributionConfig] = None,
                    validation_config: Optional[ValidationConfig] = None,
                    beam_pipeline_args: Optional[List[str]] = None) -> tfx.dsl.Pipeline:
  example_gen, statistics_gen, schema_gen, transform, trainer = base_components(
      data_root, module_file or imdb_module_file(), train_steps)
  attribution_gen = AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'], transform_graph=transform.outputs['transform_graph'],
      config=attribution_config or default_attribution_config())
  validator = ExplanationValidator(
      attributions=attribution_gen.outputs['attributions'], model=trainer.outputs['model'],
      transform_graph=transform.outputs['transform_graph'],
      config=validation_config or default_validation_config())
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'], model_blessing=validator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
          base_directory=serving_dir)))
  metadata_config = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                     if metadata_path else None)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name, pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, transform, trainer, attribution_gen,
                  validator, pusher],
      metadata_connection_config=metadata_config,
      beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
