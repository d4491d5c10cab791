"""ExplanationValidator executor: run checks, write the report and a standard ModelBlessing.

The blessing is written exactly as Evaluator writes one (an empty BLESSED or
NOT_BLESSED file; int `blessed`, string `current_model`, int
`current_model_id`), so Pusher and LatestBlessedModelStrategy take it as is.
Every config problem is raised before anything is written.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_explain import artifact_io
from tfx_explain.configurable import ConfigError
from tfx_explain.engine.loading import serving_model_dir
from tfx_explain.validation.checks import AttributionsView, CheckContext, CheckResult
from tfx_explain.types import Attributions
from tfx_explain.validation.config import ValidationConfig

ATTRIBUTIONS_KEY = 'attributions'
BASELINE_ATTRIBUTIONS_KEY = 'baseline_attributions'
MODEL_BLESSING_KEY = 'model_blessing'
MODEL_KEY = 'model'
TRANSFORM_GRAPH_KEY = 'transform_graph'
BLESSING_KEY = 'blessing'
VALIDATION_KEY = 'validation'
CONFIG_KEY = 'config'

# The names Evaluator uses (tfx.components.evaluator.constants).
BLESSED_FILE = 'BLESSED'
NOT_BLESSED_FILE = 'NOT_BLESSED'
BLESSED_PROPERTY = 'blessed'
CURRENT_MODEL_PROPERTY = 'current_model'
CURRENT_MODEL_ID_PROPERTY = 'current_model_id'
BASELINE_MODEL_PROPERTY = 'baseline_model'
BASELINE_MODEL_ID_PROPERTY = 'baseline_model_id'


def _optional_single(input_dict, key) -> Optional[types.Artifact]:
  artifacts = input_dict.get(key) or []
  if len(artifacts) > 1:
    raise ConfigError(f'{key} takes one artifact, got {len(artifacts)}.')
  return artifacts[0] if artifacts else None


def _recorded_transform_graph(attributions: types.Artifact) -> Optional[str]:
  """The transform_graph AttributionGen put in front of the model, when it was given one."""
  key = Attributions.TRANSFORM_GRAPH_PROPERTY
  if attributions.has_custom_property(key):
    return str(attributions.get_custom_property(key))
  return None


def _properties(artifact: types.Artifact) -> Dict[str, Any]:
  props = {}
  for name in ('model_uri', 'model_id'):
    if artifact.has_custom_property(name):
      props[name] = artifact.get_custom_property(name)
  return props


class Executor(base_executor.BaseExecutor):
  """Runs the configured explanation checks."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config = ValidationConfig.from_json(exec_properties[CONFIG_KEY])
    attributions = artifact_utils.get_single_instance(input_dict[ATTRIBUTIONS_KEY])
    baseline = _optional_single(input_dict, BASELINE_ATTRIBUTIONS_KEY)
    evaluator_blessing = _optional_single(input_dict, MODEL_BLESSING_KEY)
    model = _optional_single(input_dict, MODEL_KEY)
    transform_graph = _optional_single(input_dict, TRANSFORM_GRAPH_KEY)
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
    validation = artifact_utils.get_single_instance(output_dict[VALIDATION_KEY])

    splits = artifact_io.available_splits(attributions.uri)
    if config.split not in splits:
      raise ConfigError(f'Split {config.split!r} is not in the attributions at '
                        f'{attributions.uri}; available: {splits}.')
    baseline_view = None
    if baseline is not None:
      if config.split not in artifact_io.available_splits(baseline.uri):
        raise ConfigError(f'Split {config.split!r} is not in the baseline attributions at '
                          f'{baseline.uri}.')
      baseline_view = AttributionsView(baseline.uri, config.split, _properties(baseline))
    context = CheckContext(
        current=AttributionsView(attributions.uri, config.split, _properties(attributions)),
        baseline=baseline_view,
        model_path=serving_model_dir(model.uri) if model is not None else None,
        transform_graph=(transform_graph.uri if transform_graph is not None else
                         _recorded_transform_graph(attributions)))
    for check in config.checks:
      check.validate(context)

    results: List[CheckResult] = []
    for check in config.checks:
      results.extend(check.run(context))
    if evaluator_blessing is not None and config.require_model_blessing:
      upstream = evaluator_blessing.get_int_custom_property(BLESSED_PROPERTY) == 1
      results.append(CheckResult('model_blessing', upstream, float(upstream), 1.0, '>=',
                                 message=f'upstream blessing {evaluator_blessing.uri}'))
    blessed = all(r.passed for r in results)

    current_model_uri = model.uri if model is not None else context.current.properties.get(
        'model_uri', '')
    current_model_id = (model.id if model is not None and model.mlmd_artifact.HasField('id')
                        else context.current.properties.get('model_id'))
    report = {
        'blessed': blessed,
        'checks': [r.to_dict() for r in results],
        'config': json.loads(config.to_json()),
        'inputs': {'attributions': attributions.uri,
                   'baseline_attributions': baseline.uri if baseline else None,
                   'model': current_model_uri,
                   'model_blessing': evaluator_blessing.uri if evaluator_blessing else None},
    }
    artifact_io.write_validation(validation.uri, report)
    failed = [r for r in results if not r.passed]
    validation.set_int_custom_property('blessed', int(blessed))
    validation.set_int_custom_property('checks', len(results))
    validation.set_int_custom_property('failed_checks', len(failed))
    if failed:
      validation.set_string_custom_property(
          'first_failure', f'{failed[0].check} [{failed[0].slice}] {failed[0].message}')

    io_utils.write_string_file(
        os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), '')
    blessing.set_int_custom_property(BLESSED_PROPERTY, int(blessed))
    blessing.set_string_custom_property(CURRENT_MODEL_PROPERTY, current_model_uri)
    if current_model_id is not None:
      blessing.set_int_custom_property(CURRENT_MODEL_ID_PROPERTY, int(current_model_id))
    if baseline is not None and baseline.has_custom_property('model_id'):
      blessing.set_string_custom_property(
          BASELINE_MODEL_PROPERTY, str(baseline.get_custom_property('model_uri')))
      blessing.set_int_custom_property(BASELINE_MODEL_ID_PROPERTY,
                                       int(baseline.get_custom_property('model_id')))
    logging.info('ExplanationValidator: %s (%d of %d checks passed)',
                 'BLESSED' if blessed else 'NOT_BLESSED', len(results) - len(failed), len(results))
