"""ExplanationValidator executor: run checks, write the report and a standard ModelBlessing.

The blessing is written exactly as Evaluator writes one (an empty BLESSED or
NOT_BLESSED file; int `blessed`, string `current_model`, int
`current_model_id`), so Pusher and LatestBlessedModelStrategy take it as is.
Every config problem is raised before anything is written.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import storage
from tfx_explain.artifacts import validation as validation_io
from tfx_explain.attribution_gen import constants as attribution_constants
from tfx_explain.beam.resampling import resample_view_with_beam
from tfx_explain.beam_executor import BeamExecutor
from tfx_explain.configurable import ConfigError
from tfx_explain.engine.loading import serving_model_dir
from tfx_explain.explanation_validator import constants
from tfx_explain.review.reports import validation_html
from tfx_explain.validation import verdicts
from tfx_explain.validation.checks import CheckResult
from tfx_explain.validation.context import AttributionsView, CheckContext
from tfx_explain.validation.config import ValidationConfig

_MODEL_URI = attribution_constants.MODEL_URI_PROPERTY
_MODEL_ID = attribution_constants.MODEL_ID_PROPERTY


def _optional_single(input_dict, key) -> Optional[types.Artifact]:
  artifacts = input_dict.get(key) or []
  if len(artifacts) > 1:
    raise ConfigError(f'{key} takes one artifact, got {len(artifacts)}.')
  return artifacts[0] if artifacts else None


def _recorded_transform_graph(attributions: types.Artifact) -> Optional[str]:
  """The transform_graph AttributionGen put in front of the model, when it was given one."""
  key = attribution_constants.TRANSFORM_GRAPH_PROPERTY
  if attributions.has_custom_property(key):
    return str(attributions.get_custom_property(key))
  return None


def _properties(artifact: types.Artifact) -> Dict[str, Any]:
  props = {}
  for name in (_MODEL_URI, _MODEL_ID):
    if artifact.has_custom_property(name):
      props[name] = artifact.get_custom_property(name)
  return props


class Executor(BeamExecutor):
  """Runs the configured explanation checks."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config = ValidationConfig.from_json(exec_properties[constants.CONFIG_KEY])
    attributions = artifact_utils.get_single_instance(input_dict[constants.ATTRIBUTIONS_KEY])
    baseline = _optional_single(input_dict, constants.BASELINE_ATTRIBUTIONS_KEY)
    evaluator_blessing = _optional_single(input_dict, constants.MODEL_BLESSING_KEY)
    model = _optional_single(input_dict, constants.MODEL_KEY)
    transform_graph = _optional_single(input_dict, constants.TRANSFORM_GRAPH_KEY)
    blessing = artifact_utils.get_single_instance(output_dict[constants.BLESSING_KEY])
    validation = artifact_utils.get_single_instance(output_dict[constants.VALIDATION_KEY])

    splits = layout.available_splits(attributions.uri)
    if config.split not in splits:
      raise ConfigError(f'Split {config.split!r} is not in the attributions at '
                        f'{attributions.uri}; available: {splits}.')
    baseline_view = None
    if baseline is not None:
      if config.split not in layout.available_splits(baseline.uri):
        raise ConfigError(f'Split {config.split!r} is not in the baseline attributions at '
                          f'{baseline.uri}.')
      baseline_view = AttributionsView(baseline.uri, config.split, _properties(baseline))
    context = CheckContext(
        current=AttributionsView(attributions.uri, config.split, _properties(attributions)),
        baseline=baseline_view,
        model_path=serving_model_dir(model.uri) if model is not None else None,
        transform_graph=(transform_graph.uri if transform_graph is not None else
                         _recorded_transform_graph(attributions)),
        # Statistics over large tables run on the component's Beam settings.
        resample_large=functools.partial(
            resample_view_with_beam, self._make_beam_pipeline,
            tmp_dir=self._get_tmp_dir() if self._context else None))
    for check in config.checks:
      check.validate(context)

    results: List[CheckResult] = []
    draws, sampled = (verdicts.draw_views(context.current, config.estimator_draws, config.seed)
                      if config.estimator_draws and any(c.reads_importances
                                                        for c in config.checks) else ([], []))
    for check in config.checks:
      checked = check.run(context)
      verdicts.annotate(check, context, checked, draws, sampled)
      results.extend(checked)
    if evaluator_blessing is not None and config.require_model_blessing:
      upstream = (evaluator_blessing.get_int_custom_property(constants.BLESSED_PROPERTY) ==
                  constants.BLESSED_VALUE)
      results.append(CheckResult('model_blessing', upstream, float(upstream), 1.0, '>=',
                                 message=f'upstream blessing {evaluator_blessing.uri}'))
    blessed = all(r.passed for r in results)

    current_model_uri = model.uri if model is not None else context.current.properties.get(
        _MODEL_URI, '')
    current_model_id = (model.id if model is not None and model.mlmd_artifact.HasField('id')
                        else context.current.properties.get(_MODEL_ID))
    report = {
        'blessed': blessed,
        'checks': [r.to_dict() for r in results],
        'config': json.loads(config.to_json()),
        'inputs': {'attributions': attributions.uri,
                   'baseline_attributions': baseline.uri if baseline else None,
                   'model': current_model_uri,
                   'model_blessing': evaluator_blessing.uri if evaluator_blessing else None},
    }
    with storage.staged_output(validation.uri) as staging:
      validation_io.write_validation(staging, report, validation_html(report))
    failed = [r for r in results if not r.passed]
    verdict = constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE
    validation.set_int_custom_property(constants.BLESSED_PROPERTY, verdict)
    validation.set_int_custom_property(constants.CHECKS_PROPERTY, len(results))
    validation.set_int_custom_property(constants.FAILED_CHECKS_PROPERTY, len(failed))
    if failed:
      first = failed[0]
      validation.set_string_custom_property(constants.FIRST_FAILURE_PROPERTY,
                                            f'{first.check} [{first.slice}] {first.message}')

    with storage.staged_output(blessing.uri) as staging:
      io_utils.write_string_file(
          os.path.join(staging, constants.BLESSED_FILE if blessed else constants.NOT_BLESSED_FILE),
          '')
    blessing.set_int_custom_property(constants.BLESSED_PROPERTY, verdict)
    blessing.set_string_custom_property(constants.CURRENT_MODEL_PROPERTY, current_model_uri)
    if current_model_id is not None:
      blessing.set_int_custom_property(constants.CURRENT_MODEL_ID_PROPERTY, int(current_model_id))
    if baseline is not None and baseline.has_custom_property(_MODEL_ID):
      blessing.set_string_custom_property(
          constants.BASELINE_MODEL_PROPERTY, str(baseline.get_custom_property(_MODEL_URI)))
      blessing.set_int_custom_property(constants.BASELINE_MODEL_ID_PROPERTY,
                                       int(baseline.get_custom_property(_MODEL_ID)))
    logging.info('ExplanationValidator: %s (%d of %d checks passed)',
                 'BLESSED' if blessed else 'NOT_BLESSED', len(results) - len(failed), len(results))
