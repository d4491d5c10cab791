"""The penguin pipeline with explanations as a gated step.

    CsvExampleGen -> StatisticsGen -> SchemaGen -> Trainer -> Evaluator
                                                    \-> AttributionGen -> ExplanationValidator -> Pusher
    baseline: latest_blessed_attributions() Resolver -> ExplanationValidator
    compression (include_pruning): Trainer -> PrunedModelTrainer -> PrunedEvaluator (vs base)
                                   -> PrunedAttributionGen -> PrunedExplanationValidator
                                      (stability against the base model's attributions)

The stability baseline is the Attributions artifact of the last model our
validator blessed, found by a resolver (rather than re-running AttributionGen
on the old model): it costs nothing, and on the first run it is simply empty,
which the stability check reports as "no baseline".
"""

from __future__ import annotations

import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from tfx_explain import (AttributionConfig, AttributionDriftCheck, AttributionGen,
                         AttributionSkewCheck, CompletenessCheck, FaithfulnessCheck,
                         Distillation, ExplanationValidator, FeatureShareLimit,
                         IntegratedGradients, KernelShap, latest_blessed_attributions,
                         MethodAgreementCheck, ModelRandomizationCheck, PrunedModelTrainer,
                         PruningConfig, SampledShapley, SkippedRowsLimit, ValidationConfig)

DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
TRAINER_RUN_FN = 'tfx_explain.pipelines.penguin.trainer_module.run_fn'
LABEL_KEY = 'species'


def default_attribution_config() -> AttributionConfig:
  return AttributionConfig(
      methods=[IntegratedGradients(steps=256, baseline='mean'),
               KernelShap(num_samples=2048, background_size=50),
               SampledShapley(num_permutations=16, baseline='mean')],
      # The training split too: the validator compares the two for skew.
      splits=['eval', 'train'], label_key=LABEL_KEY, target='predicted',
      slicing_specs=[[], ['island']])


def default_validation_config() -> ValidationConfig:
  return ValidationConfig(checks=[
      CompletenessCheck(method='integrated_gradients', max_relative_error_p95=0.1),
      # A sensitive attribute may not carry more than a quarter of the evidence.
      FeatureShareLimit(feature='sex', max_share=0.25, methods=['kernel_shap']),
      # Drift vs the last blessed model, per island: Clarify's line (nDCG@5 >= 0.9), judged
      # on the upper 95 % bound, and each feature's attribution distribution.
      AttributionDriftCheck(method='kernel_shap', statistic='ndcg', k=5, threshold=0.9),
      AttributionDriftCheck(method='kernel_shap', statistic='distance', threshold=0.15,
                            per_slice=False),
      # Training/serving skew: the eval split's explanations vs the training split's.
      AttributionSkewCheck(method='kernel_shap', statistic='ndcg', k=5, threshold=0.9),
      # Two estimators against the same baseline (mean floats, most frequent strings) must
      # rank alike; Kernel SHAP's reference is the background sample instead.
      MethodAgreementCheck('integrated_gradients', 'sampled_shapley', min_spearman=0.5),
      # Deleting features in attribution order must move the output faster than in random
      # order (the lower 95 % bound of the mean gain, on the 0..1 scale of each example's
      # output range); shuffled attributions measure about 0.
      FaithfulnessCheck(method='integrated_gradients', curve='both', min_gain=0.08),
      FaithfulnessCheck(method='kernel_shap', curve='deletion', min_gain=0.08),
      # Cascading: every layer re-drawn from the top down must change the attributions.
      ModelRandomizationCheck(method='integrated_gradients', max_correlation=0.9),
      SkippedRowsLimit(max_fraction=0.0),
  ])


def default_pruning_config() -> PruningConfig:
  return PruningConfig(target_sparsity=0.8, schedule='polynomial', fine_tune_steps=300,
                       label_key=LABEL_KEY, learning_rate=3e-3,
                       distillation=Distillation(temperature=2.0, alpha=0.5))


def compression_validation_config() -> ValidationConfig:
  """Does the compressed model still explain like its teacher?"""
  return ValidationConfig(checks=[
      # The same drift statistics, with the teacher (base model) as the reference.
      AttributionDriftCheck(method='kernel_shap', statistic='ndcg', k=5, threshold=0.9,
                            baseline_name='teacher (base model)'),
      AttributionDriftCheck(method='kernel_shap', statistic='top_k_overlap', k=2,
                            threshold=0.5, baseline_name='teacher (base model)'),
      CompletenessCheck(method='integrated_gradients', max_relative_error_p95=0.2),
  ])


def pruned_eval_config(max_accuracy_drop: float = 0.05) -> tfma.EvalConfig:
  """Candidate (pruned) vs baseline (base model): accuracy may drop at most this much."""
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(name='candidate', label_key=LABEL_KEY),
                   tfma.ModelSpec(name='baseline', label_key=LABEL_KEY, is_baseline=True)],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(
              class_name='SparseCategoricalAccuracy',
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.6}),
                  change_threshold=tfma.GenericChangeThreshold(
                      direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                      absolute={'value': -max_accuracy_drop}))),
      ])])


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
          # Filled by tfx_explain.beam.tfma_extractor (Evaluator's module_path).
          tfma.MetricConfig(class_name='MeanAbsoluteAttributions'),
          tfma.MetricConfig(class_name='TotalAttributions'),
      ])])


def create_pipeline(pipeline_name: str, pipeline_root: str, metadata_path: Optional[str],
                    data_root: str = DATA_ROOT, train_steps: int = 200, eval_steps: int = 5,
                    attribution_config: Optional[AttributionConfig] = None,
                    validation_config: Optional[ValidationConfig] = None,
                    include_pruning: bool = True,
                    pruning_config: Optional[PruningConfig] = None,
                    serving_model_dir: Optional[str] = None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    enable_cache: bool = False,
                    stability_baseline: bool = True,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
  """The penguin pipeline.

  `stability_baseline=False` leaves out the resolver of the last blessed
  model's attributions (the stability check then reports "no baseline"):
  Kubeflow V2 compiles only TFX's own resolver strategies.
  `metadata_connection_config` (e.g. a shared MySQL store) replaces the sqlite
  file at `metadata_path`.
  """
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
      eval_config=eval_config(),
      module_path='tfx_explain.beam.tfma_extractor')
  attribution_gen = AttributionGen(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      schema=schema_gen.outputs['schema'],
      config=attribution_config or default_attribution_config())
  baseline = (latest_blessed_attributions(attribution_gen.id, 'ExplanationValidator')
              if stability_baseline else None)
  validator = ExplanationValidator(
      attributions=attribution_gen.outputs['attributions'],
      baseline_attributions=baseline.outputs['attributions'] if baseline else None,
      model_blessing=evaluator.outputs['blessing'],
      model=trainer.outputs['model'],
      config=validation_config or default_validation_config())
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=validator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=serving_model_dir or os.path.join(pipeline_root, 'serving_model'))))
  components = [example_gen, statistics_gen, schema_gen, trainer, evaluator, attribution_gen,
                validator, pusher] + ([baseline] if baseline else [])
  if include_pruning:
    pruned = PrunedModelTrainer(
        examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
        base_model=trainer.outputs['model'], config=pruning_config or default_pruning_config())
    pruned_evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs['examples'], model=pruned.outputs['model'],
        baseline_model=trainer.outputs['model'],
        eval_config=pruned_eval_config()).with_id('PrunedEvaluator')
    pruned_attributions = AttributionGen(
        examples=example_gen.outputs['examples'], model=pruned.outputs['model'],
        schema=schema_gen.outputs['schema'],
        config=attribution_config or default_attribution_config()).with_id('PrunedAttributionGen')
    pruned_validator = ExplanationValidator(
        attributions=pruned_attributions.outputs['attributions'],
        baseline_attributions=attribution_gen.outputs['attributions'],
        model_blessing=pruned_evaluator.outputs['blessing'],
        model=pruned.outputs['model'],
        config=compression_validation_config()).with_id('PrunedExplanationValidator')
    components += [pruned, pruned_evaluator, pruned_attributions, pruned_validator]
  metadata_config = metadata_connection_config or (
      tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
      if metadata_path else None)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_config,
      beam_pipeline_args=beam_pipeline_args or ['--direct_num_workers=1'])
