"""PrunedModelTrainer component: spec and component."""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ComponentSpec
from tfx.types.component_spec import ExecutionParameter

from tfx_explain.pruned_model_trainer import constants
from tfx_explain.pruned_model_trainer import executor
from tfx_explain.pruning.core import PruningConfig


class PrunedModelTrainerSpec(ComponentSpec):
  PARAMETERS = {constants.CONFIG_KEY: ExecutionParameter(type=str)}
  INPUTS = {
      constants.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      constants.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
      constants.BASE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      constants.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                                     optional=True),
  }
  OUTPUTS = {
      constants.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      constants.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun),
  }


class PrunedModelTrainer(base_component.BaseComponent):
  """Prunes (and optionally distils) a trained Keras model into a standard Model.

  Works on what TFX's Trainer writes, `model.save` or `tf.saved_model.save`,
  with the Transform layer the model carries (or `transform_graph`): give it the
  raw examples and SchemaGen's schema. The export keeps the base model's
  signatures and takes the same raw tf.Examples.

      pruned = PrunedModelTrainer(
          examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
          base_model=trainer.outputs['model'],
          config=PruningConfig(target_sparsity=0.8, label_key='species',
                               distillation=Distillation(temperature=2.0, alpha=0.5)))
      # pruned.outputs['model'] goes to Evaluator/Pusher; 'model_run' holds TensorBoard logs.
  """
  SPEC_CLASS = PrunedModelTrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel,
               base_model: types.BaseChannel, config: PruningConfig,
               transform_graph: Optional[types.BaseChannel] = None):
    if not isinstance(config, PruningConfig):
      raise TypeError(f'config must be a PruningConfig, got {type(config).__name__}.')
    spec = PrunedModelTrainerSpec(
        examples=examples, schema=schema, base_model=base_model, transform_graph=transform_graph,
        config=config.to_json(),
        model=types.Channel(type=standard_artifacts.Model),
        model_run=types.Channel(type=standard_artifacts.ModelRun))
    super().__init__(spec=spec)
