"""AttributionGen component: spec and component (executor in executor.py)."""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ComponentSpec
from tfx.types.component_spec import ExecutionParameter

from tfx_explain.attribution_gen import constants
from tfx_explain.attribution_gen import executor
from tfx_explain.config import AttributionConfig
from tfx_explain.types import Attributions


class AttributionGenSpec(ComponentSpec):
  """Inputs, outputs and parameters of AttributionGen."""
  PARAMETERS = {
      constants.CONFIG_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {
      constants.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      constants.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      constants.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
      constants.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                                     optional=True),
  }
  OUTPUTS = {
      constants.ATTRIBUTIONS_KEY: ChannelParameter(type=Attributions),
  }


class AttributionGen(base_beam_component.BaseBeamComponent):
  """Computes feature attributions of a model over example splits.

      attributions = AttributionGen(
          examples=example_gen.outputs['examples'],
          model=trainer.outputs['model'],
          schema=schema_gen.outputs['schema'],
          config=AttributionConfig(methods=[IntegratedGradients(), KernelShap()],
                                   label_key='species', slicing_specs=[[], ['island']]),
      ).outputs['attributions']

  With Transform in the pipeline, give the raw examples (ExampleGen's output),
  SchemaGen's schema and, unless the model carries its own `tft_layer` as
  TFX's example modules attach it, `transform_graph=transform.outputs[
  'transform_graph']`: attributions are then computed and named in raw
  feature space, differentiated through the Transform graph.

  Before attributing, a sample of examples goes through the model's
  `serving_default` and through the function being explained; if they
  differ, the run fails and nothing is published.

  The Beam work honours the pipeline's `beam_pipeline_args`, so it scales out
  on Dataflow, Flink or Spark by changing runner arguments only.
  """
  SPEC_CLASS = AttributionGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               config: AttributionConfig, schema: Optional[types.BaseChannel] = None,
               transform_graph: Optional[types.BaseChannel] = None):
    if not isinstance(config, AttributionConfig):
      raise TypeError(f'config must be an AttributionConfig, got {type(config).__name__}.')
    spec = AttributionGenSpec(
        examples=examples, model=model, schema=schema, transform_graph=transform_graph,
        config=config.to_json(),
        attributions=types.Channel(type=Attributions))
    super().__init__(spec=spec)
