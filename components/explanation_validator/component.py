"""ExplanationValidator component: spec and component."""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ComponentSpec
from tfx.types.component_spec import ExecutionParameter

from tfx_explain.explanation_validator import constants
from tfx_explain.explanation_validator import executor
from tfx_explain.types import Attributions, ExplanationValidation
from tfx_explain.validation.config import ValidationConfig


class ExplanationValidatorSpec(ComponentSpec):
  PARAMETERS = {constants.CONFIG_KEY: ExecutionParameter(type=str)}
  INPUTS = {
      constants.ATTRIBUTIONS_KEY: ChannelParameter(type=Attributions),
      constants.BASELINE_ATTRIBUTIONS_KEY: ChannelParameter(type=Attributions, optional=True),
      constants.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                                    optional=True),
      constants.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
      constants.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                                     optional=True),
  }
  OUTPUTS = {
      constants.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
      constants.VALIDATION_KEY: ChannelParameter(type=ExplanationValidation),
  }


class ExplanationValidator(base_component.BaseComponent):
  """Checks explanations and writes a ModelBlessing that can gate Pusher.

      validator = ExplanationValidator(
          attributions=attribution_gen.outputs['attributions'],
          baseline_attributions=baseline_resolver.outputs['attributions'],   # optional
          model_blessing=evaluator.outputs['blessing'],                      # optional, AND-ed
          model=trainer.outputs['model'],                                    # optional
          config=ValidationConfig(checks=[CompletenessCheck(), FeatureShareLimit('sex', 0.1)]))
      pusher = Pusher(model=..., model_blessing=validator.outputs['blessing'], ...)
  """
  SPEC_CLASS = ExplanationValidatorSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, attributions: types.BaseChannel, config: ValidationConfig,
               baseline_attributions: Optional[types.BaseChannel] = None,
               model_blessing: Optional[types.BaseChannel] = None,
               model: Optional[types.BaseChannel] = None,
               transform_graph: Optional[types.BaseChannel] = None):
    if not isinstance(config, ValidationConfig):
      raise TypeError(f'config must be a ValidationConfig, got {type(config).__name__}.')
    spec = ExplanationValidatorSpec(
        attributions=attributions, baseline_attributions=baseline_attributions,
        model_blessing=model_blessing, model=model, transform_graph=transform_graph,
        config=config.to_json(),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        validation=types.Channel(type=ExplanationValidation))
    super().__init__(spec=spec)
