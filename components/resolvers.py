"""Resolvers for explanation baselines: the attributions of the last blessed model."""

from __future__ import annotations

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver
from tfx.types import standard_artifacts

from tfx_explain.attribution_gen import constants as attribution_constants
from tfx_explain.explanation_validator import constants as validator_constants
from tfx_explain.types import Attributions

_MODEL_ID = attribution_constants.MODEL_ID_PROPERTY
# The strategy's inputs, named as the outputs they come from.
_ATTRIBUTIONS = attribution_constants.ATTRIBUTIONS_KEY
_BLESSING = validator_constants.MODEL_BLESSING_KEY


class LatestBlessedAttributionsStrategy(resolver.ResolverStrategy):
  """The newest Attributions whose model our validator blessed.

  Inputs: `attributions` (Attributions, restrict to the producing AttributionGen)
  and `model_blessing` (ModelBlessing, restrict to ExplanationValidator: Evaluator
  blesses the same models). Attributions record `model_id`, and a blessing its
  `current_model_id`, so no recomputation is needed. Empty on the first run.
  `latest_blessed_attributions` builds the Resolver node.
  """

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    attributions = sorted(input_dict.get(_ATTRIBUTIONS, []), key=lambda a: a.id, reverse=True)
    blessed = {
        b.get_int_custom_property(validator_constants.CURRENT_MODEL_ID_PROPERTY): b
        for b in input_dict.get(_BLESSING, [])
        if b.get_int_custom_property(validator_constants.BLESSED_PROPERTY) ==
        validator_constants.BLESSED_VALUE}
    for candidate in attributions:
      if candidate.has_custom_property(_MODEL_ID):
        model_id = candidate.get_int_custom_property(_MODEL_ID)
        if model_id in blessed:
          return {_ATTRIBUTIONS: [candidate], _BLESSING: [blessed[model_id]]}
    return {_ATTRIBUTIONS: [], _BLESSING: []}


def latest_blessed_attributions(attribution_gen: str = 'AttributionGen',
                                explanation_validator: str = 'ExplanationValidator',
                                node_id: str = 'baseline_attributions_resolver'
                                ) -> resolver.Resolver:
  """A Resolver node giving the attributions of the last model ExplanationValidator blessed.

      baseline = latest_blessed_attributions()
      validator = ExplanationValidator(
          ..., baseline_attributions=baseline.outputs['attributions'])

  Give the ids of your AttributionGen and ExplanationValidator nodes when they
  are not the defaults (`.with_id(...)`).
  """
  return resolver.Resolver(
      strategy_class=LatestBlessedAttributionsStrategy,
      attributions=types.Channel(
          type=Attributions, producer_component_id=attribution_gen,
          output_key=attribution_constants.ATTRIBUTIONS_KEY),
      model_blessing=types.Channel(
          type=standard_artifacts.ModelBlessing, producer_component_id=explanation_validator,
          output_key=validator_constants.BLESSING_KEY)).with_id(node_id)
