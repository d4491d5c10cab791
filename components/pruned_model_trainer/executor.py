"""PrunedModelTrainer executor: checks inputs, prunes (`pruning/training.py`), publishes.

The pruned model is written under `<model>/.staging` and moved to
`<model>/Format-Serving` only when export and measurements succeed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import storage
from tfx_explain.configurable import ConfigError
from tfx_explain.pruned_model_trainer import constants
from tfx_explain.pruning.core import PruningConfig
from tfx_explain.pruning.training import PruningInputs, load_for_pruning, prune_and_measure

_INT_PROPERTIES = ('total_parameters', 'nonzero_parameters', 'base_gzip_bytes',
                   'pruned_gzip_bytes', 'fine_tune_steps')


def _schema(schema_artifacts):
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  uri = artifact_utils.get_single_uri(schema_artifacts)
  return io_utils.parse_pbtxt_file(io_utils.get_only_uri_in_dir(uri), schema_pb2.Schema())


def _write_report(directory: str, report: Dict[str, Any]) -> None:
  with tf.io.gfile.GFile(os.path.join(directory, constants.REPORT_FILE), 'w') as f:
    f.write(json.dumps(report, indent=1, sort_keys=True))


class Executor(base_executor.BaseExecutor):
  """Prunes the base model and exports a standard Model."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config = PruningConfig.from_json(exec_properties[constants.CONFIG_KEY])
    examples = artifact_utils.get_single_instance(input_dict[constants.EXAMPLES_KEY])
    base_artifact = artifact_utils.get_single_instance(input_dict[constants.BASE_MODEL_KEY])
    model_out = artifact_utils.get_single_instance(output_dict[constants.MODEL_KEY])
    model_run = artifact_utils.get_single_instance(output_dict[constants.MODEL_RUN_KEY])
    splits = artifact_utils.decode_split_names(examples.split_names)
    for split in (config.train_split, config.eval_split):
      if split not in splits:
        raise ConfigError(f'Split {split!r} does not exist in the examples; available: {splits}.')
    inputs = PruningInputs(
        base_model_uri=base_artifact.uri,
        train_files=layout.files_in(artifact_utils.get_split_uri([examples], config.train_split)),
        eval_files=layout.files_in(artifact_utils.get_split_uri([examples], config.eval_split)),
        schema=_schema(input_dict[constants.SCHEMA_KEY]),
        transform_graph=(artifact_utils.get_single_uri(input_dict[constants.TRANSFORM_GRAPH_KEY])
                         if input_dict.get(constants.TRANSFORM_GRAPH_KEY) else None))

    base = load_for_pruning(config, inputs)
    with storage.staged_output(model_out.uri) as staging:
      report = prune_and_measure(config, inputs, base, model_run.uri,
                                 path_utils.serving_model_dir(staging))
      _write_report(staging, report)
    _write_report(model_run.uri, report)
    self._set_properties(model_out, report, config, base_artifact)
    metric = report['quality_metric']
    logging.info('PrunedModelTrainer: sparsity %.3f (target %.3f), gzip %d -> %d bytes, '
                 'eval %s %.4f -> %.4f', report['achieved_sparsity'], config.target_sparsity,
                 report['base_gzip_bytes'], report['pruned_gzip_bytes'], metric,
                 report['base'][metric], report['pruned'][metric])

  @staticmethod
  def _set_properties(model_out, report, config, base_artifact):
    for key in ('target_sparsity', 'achieved_sparsity'):
      model_out.set_float_custom_property(key, float(report[key]))
    for key in ('accuracy_delta', 'rmse_delta'):
      if key in report:
        model_out.set_float_custom_property(key, float(report[key]))
    for key in _INT_PROPERTIES:
      model_out.set_int_custom_property(key, int(report[key]))
    for which in ('base', 'pruned'):
      for metric, value in report[which].items():
        model_out.set_float_custom_property(f'{which}_{metric}', value)
    model_out.set_int_custom_property('distilled', int(config.distillation is not None))
    model_out.set_string_custom_property(constants.BASE_MODEL_PROPERTY, base_artifact.uri)
    model_out.set_string_custom_property('task', report['task'])
