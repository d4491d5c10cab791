"""AttributionGen executor: checks inputs, runs WriteAttributions, writes reviews, publishes.

Everything is written under `<output>/.staging` and moved into place only
when the pipeline and the reviews succeed, so a failed run leaves nothing that
looks like output (and TFX publishes no artifact for it).
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.types import artifact_utils

from tfx_explain.artifacts import storage
from tfx_explain.artifacts.summary import SummaryPlan
from tfx_explain.attribution_gen import constants
from tfx_explain.attribution_gen import inputs
from tfx_explain.beam.artifact import AttributionsPlan, SplitPlan, WriteAttributions
from tfx_explain.beam.attribution import ModelSettings
from tfx_explain.beam.worker import set_tf_threads
from tfx_explain.beam_executor import BeamExecutor
from tfx_explain.config import AttributionConfig
from tfx_explain.engine.image import region_feature_names
from tfx_explain.engine.image_model import FlatImageModel, ImageModel
from tfx_explain.engine.model import element_name
from tfx_explain.review.attributions import write_reviews


def attributions_plan(config: AttributionConfig, config_json: str, model, spec,
                      split_locations: Dict[str, str], model_uri: str,
                      files: Dict[str, List[str]], transform_graph=None) -> AttributionsPlan:
  """What WriteAttributions computes and writes, from checked inputs."""
  is_image = isinstance(model, ImageModel)
  features = region_feature_names(model.input_name) if is_image else list(model.input_names)
  skipped = [tuple(m.skipped_features(model)) if not is_image else () for m in config.methods]
  splits = tuple(
      SplitPlan(tuple(files[split]), split_locations[split],
                SummaryPlan(
                    split=split, features=tuple(features), output_kind=model.output_kind,
                    target=config.target, methods=tuple(m.label for m in config.methods),
                    method_configs=tuple(m.to_json_dict() for m in config.methods),
                    skipped_features=tuple(skipped),
                    value_kinds=tuple(m.value_kind for m in config.methods),
                    reference_split=config.baseline_split,
                    feature_groups=tuple((name, tuple(element_name(name, i) for i in range(size)))
                                         for name, size in spec.vectors),
                    image_shape=tuple(spec.image_shape),
                    standard_errors=any(m.reports_standard_errors for m in config.methods),
                    tokens=any(m.token_method for m in config.methods)))
      for split in config.splits)
  slicing = [()] + [tuple(s) for s in config.slicing_specs if list(s)]
  return AttributionsPlan(
      model=ModelSettings(model_uri, transform_graph), model_location=model_uri,
      config_json=config_json, spec=spec, slicing_specs=tuple(dict.fromkeys(slicing)),
      splits=splits, reference_split=config.baseline_split,
      reference_files=tuple(files[config.baseline_split]),
      background_size=config.effective_background_size, seed=config.seed,
      batch_size=config.batch_size, max_examples_per_split=config.max_examples_per_split,
      tf_threads_per_worker=config.tf_threads_per_worker)


def write_attributions(config: AttributionConfig, config_json: str, model_uri: str,
                       files: Dict[str, List[str]], split_locations: Dict[str, str],
                       output_uri: str, make_pipeline, schema=None, transform_graph=None):
  """Checks the inputs, runs WriteAttributions on `make_pipeline()` and publishes the
  artifact at output_uri (nothing is published when anything fails). Returns the
  summaries per split. The executor and `tfx-explain explain` both come here.

  files: the data files of every split the config reads (explained and reference);
  split_locations: each split's folder, recorded for TFMA's EvalRun.
  """
  first_split = files[config.splits[0]]
  # Before this process first runs TensorFlow: with the in-process runner it
  # is the worker.
  set_tf_threads(config.tf_threads_per_worker)
  model = config.load_model(model_uri, transform_graph, shared=True)
  inputs.check_methods_apply(config, model)
  if isinstance(model, ImageModel):
    spec = inputs.image_feature_spec(config, model, schema)
    if isinstance(model, FlatImageModel):
      # A flat pixel vector: serving is compared on the model as it is.
      inputs.check_served_function(config, model.flat, model_uri,
                                   inputs.feature_spec(config, model.flat, schema), first_split)
  else:
    spec = inputs.feature_spec(config, model, schema)
    inputs.check_served_function(config, model, model_uri, spec, first_split)
  plan = attributions_plan(config, config_json, model, spec, split_locations, model_uri,
                           files, transform_graph)
  with storage.staged_output(output_uri) as staging:
    with make_pipeline() as pipeline:
      _ = pipeline | 'WriteAttributions' >> WriteAttributions(plan, staging)
    return write_reviews(staging, config.splits,
                         image_spec=spec if spec.image_shape else None, split_files=files)


class Executor(BeamExecutor):
  """Computes feature attributions for the configured splits."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config_json = exec_properties[constants.CONFIG_KEY]
    config = AttributionConfig.from_json(config_json)
    examples = artifact_utils.get_single_instance(input_dict[constants.EXAMPLES_KEY])
    model_artifact = artifact_utils.get_single_instance(input_dict[constants.MODEL_KEY])
    output = artifact_utils.get_single_instance(output_dict[constants.ATTRIBUTIONS_KEY])
    schema = inputs.load_schema(input_dict.get(constants.SCHEMA_KEY))
    transform_graph = (artifact_utils.get_single_uri(input_dict[constants.TRANSFORM_GRAPH_KEY])
                       if input_dict.get(constants.TRANSFORM_GRAPH_KEY) else None)
    files = inputs.split_files(examples, config)
    locations = {split: artifact_utils.get_split_uri([examples], split) for split in files}
    started = time.time()
    summaries = write_attributions(config, config_json, model_artifact.uri, files, locations,
                                   output.uri, self._make_beam_pipeline, schema,
                                   transform_graph)
    self._set_properties(output, config, summaries, model_artifact, transform_graph,
                         time.time() - started)

  @staticmethod
  def _set_properties(output, config, summaries, model_artifact, transform_graph, seconds):
    output.set_string_custom_property(constants.MODEL_URI_PROPERTY, model_artifact.uri)
    if transform_graph:
      output.set_string_custom_property(constants.TRANSFORM_GRAPH_PROPERTY, transform_graph)
    if model_artifact.mlmd_artifact.HasField('id'):
      output.set_int_custom_property(constants.MODEL_ID_PROPERTY, model_artifact.id)
    output.set_string_custom_property(constants.SPLIT_NAMES_PROPERTY, json.dumps(config.splits))
    output.set_string_custom_property(constants.METHODS_PROPERTY,
                                      json.dumps([m.label for m in config.methods]))
    output.set_float_custom_property(constants.PIPELINE_SECONDS_PROPERTY, seconds)
    for split, summary in summaries.items():
      output.set_int_custom_property(f'{split}_example_count', summary.examples)
      output.set_int_custom_property(f'{split}_skipped_rows', summary.skipped_non_finite_rows)
      for label, info in summary.methods.items():
        error = info.absolute_completeness_error
        if error is not None:
          output.set_float_custom_property(f'{split}_{label}_completeness_error_p50', error.p50)
          output.set_float_custom_property(f'{split}_{label}_completeness_error_p95', error.p95)
        if info.steps is not None:
          for name in ('p50', 'p95', 'max'):
            output.set_float_custom_property(f'{split}_{label}_steps_{name}',
                                             getattr(info.steps, name))
    speed = summaries[config.splits[0]].examples_per_second
    if speed:
      output.set_float_custom_property(constants.EXAMPLES_PER_SECOND_PROPERTY, speed)
    logging.info('AttributionGen wrote %s', output.uri)
