"""The {{PIPELINE_NAME}} pipeline: train, evaluate, explain, gate the push on the explanations.

    CsvExampleGen -> StatisticsGen -> SchemaGen -> Trainer -> Evaluator ----------\
                                                      \-> AttributionGen -> ExplanationValidator -> Pusher
    Resolver (attributions of the last blessed model) -----------------/
    optional: Trainer -> PrunedModelTrainer -> Evaluator (pruned vs trained)
"""

from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2

from tfx_explain import (AttributionConfig, AttributionGen, ExplanationValidator,
                         latest_blessed_attributions, PrunedModelTrainer, PruningConfig,
                         ValidationConfig)


def accuracy_config(label_key: str, lower_bound: float, max_drop: Optional[float] = None):
  """Accuracy above `lower_bound`; with `max_drop`, also at most that far below a baseline model."""
  threshold = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': lower_bound}))
  model_specs = [tfma.ModelSpec(label_key=label_key)]
  if max_drop is not None:
    threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -max_drop}))
    model_specs = [tfma.ModelSpec(name='candidate', label_key=label_key),
                   tfma.ModelSpec(name='baseline', label_key=label_key, is_baseline=True)]
  return tfma.EvalConfig(
      model_specs=model_specs, slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='SparseCategoricalAccuracy', threshold=threshold)])])


def create_pipeline(
    pipeline_name: str, pipeline_root: str, data_path: str, run_fn: str, label_key: str,
    train_steps: int, eval_steps: int, min_accuracy: float,
    attribution_config: AttributionConfig, validation_config: ValidationConfig,
    serving_model_dir: str,
    pruning_config: Optional[PruningConfig] = None, max_pruned_accuracy_drop: float = 0.05,
    stability_baseline: bool = True,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True) -> tfx.dsl.Pipeline:
  """Builds the pipeline. `stability_baseline=False` for Kubeflow V2, which
  compiles only TFX's own resolver strategies."""
  example_gen = tfx.components.CsvExampleGen(input_base=data_path)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'],
                                        infer_feature_shape=True)
  trainer = tfx.components.Trainer(
      run_fn=run_fn, examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=eval_steps))
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      eval_config=accuracy_config(label_key, min_accuracy))
  attribution_gen = AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'], config=attribution_config)
  components = [example_gen, statistics_gen, schema_gen, trainer, evaluator, attribution_gen]

  baseline_attributions = None
  if stability_baseline:
    resolver = latest_blessed_attributions(attribution_gen.id, 'ExplanationValidator')
    baseline_attributions = resolver.outputs['attributions']
    components.append(resolver)
  validator = ExplanationValidator(
      attributions=attribution_gen.outputs['attributions'],
      baseline_attributions=baseline_attributions,
      model_blessing=evaluator.outputs['blessing'], model=trainer.outputs['model'],
      config=validation_config)
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'], model_blessing=validator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))
  components += [validator, pusher]

  if pruning_config is not None:
    pruned = PrunedModelTrainer(
        examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
        base_model=trainer.outputs['model'], config=pruning_config)
    pruned_evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs['examples'], model=pruned.outputs['model'],
        baseline_model=trainer.outputs['model'],
        eval_config=accuracy_config(label_key, min_accuracy, max_pruned_accuracy_drop),
    ).with_id('PrunedEvaluator')
    components += [pruned, pruned_evaluator]

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
      enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
