"""Resolver strategies for explanation baselines."""

from __future__ import annotations

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

from tfx_explain.explanation_validator import executor as validator_executor


class LatestBlessedAttributionsStrategy(resolver.ResolverStrategy):
  """The newest Attributions whose model our validator blessed.

  Inputs: `attributions` (Attributions, restrict to the producing AttributionGen)
  and `model_blessing` (ModelBlessing, restrict to ExplanationValidator: Evaluator
  blesses the same models). Attributions record `model_id`, and a blessing its
  `current_model_id`, so no recomputation is needed. Empty on the first run.

      Resolver(strategy_class=LatestBlessedAttributionsStrategy,
               attributions=Channel(type=Attributions, producer_component_id='AttributionGen',
                                    output_key='attributions'),
               model_blessing=Channel(type=ModelBlessing,
                                      producer_component_id='ExplanationValidator',
                                      output_key='blessing'))
  """

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    attributions = sorted(input_dict.get('attributions', []), key=lambda a: a.id, reverse=True)
    blessed = {
        b.get_int_custom_property(validator_executor.CURRENT_MODEL_ID_PROPERTY): b
        for b in input_dict.get('model_blessing', [])
        if b.get_int_custom_property(validator_executor.BLESSED_PROPERTY) == 1}
    for candidate in attributions:
      if candidate.has_custom_property('model_id') and \
          candidate.get_int_custom_property('model_id') in blessed:
        model_id = candidate.get_int_custom_property('model_id')
        return {'attributions': [candidate], 'model_blessing': [blessed[model_id]]}
    return {'attributions': [], 'model_blessing': []}
