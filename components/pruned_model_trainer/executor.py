"""PrunedModelTrainer executor: validates inputs, prunes, measures, publishes.

Two ways to prune, chosen by how the base model was saved:
- a tf_keras model saved with `model.save` and no Transform layer: its layers
  are wrapped by tfmot (`pruning/keras_model.py`);
- anything else with a saved Keras call — TFX's example modules save with
  `tf.saved_model.save` and attach `model.tft_layer` — is pruned through that
  call and re-exported with every signature and its Transform layer
  (`pruning/saved_model.py`).
Either way the loss follows the model's task (softmax, logits, sigmoid or
regression: `pruning/tasks.py`), and quality is measured on what each model's
`serving_default` returns for the raw eval examples.

The pruned model is written under `<model>/.staging` and moved to
`<model>/Format-Serving` only when export and measurements succeed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_explain import artifact_io
from tfx_explain.configurable import ConfigError
from tfx_explain.engine.loading import (has_keras_metadata, label_function, load_keras_model,
                                        load_restored_model, serving_model_dir)
from tfx_explain.engine.model import ModelAccessError
from tfx_explain.pruning import core
from tfx_explain.pruning import keras_model as keras_pruning
from tfx_explain.pruning import saved_model as saved_model_pruning
from tfx_explain.pruning import tasks
from tfx_explain.pruning.core import PruningConfig

EXAMPLES_KEY = 'examples'
SCHEMA_KEY = 'schema'
BASE_MODEL_KEY = 'base_model'
TRANSFORM_GRAPH_KEY = 'transform_graph'
MODEL_KEY = 'model'
MODEL_RUN_KEY = 'model_run'
CONFIG_KEY = 'config'
REPORT_FILE = 'pruning_report.json'
SERVING_DIR = 'Format-Serving'


def _schema(schema_artifacts):
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  uri = artifact_utils.get_single_uri(schema_artifacts)
  return io_utils.parse_pbtxt_file(io_utils.get_only_uri_in_dir(uri), schema_pb2.Schema())


def load_base_model(model_uri: str, transform_graph=None, output_key=None):
  """(the base model as a restored function, its path); errors name the folder."""
  path = serving_model_dir(model_uri)
  if not tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    raise ConfigError(f'The base model at {path} is not a SavedModel (no saved_model.pb).')
  try:
    return load_restored_model(path, output_key, transform_graph), path
  except ModelAccessError as e:
    raise ConfigError(f'The base model at {path} is not a Keras model PrunedModelTrainer can '
                      f'prune: {e}') from e


def _raw_feature_spec(schema):
  from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
  return schema_utils.schema_as_feature_spec(schema).feature_spec


class Executor(base_executor.BaseExecutor):
  """Prunes the base model and exports a standard Model."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config = PruningConfig.from_json(exec_properties[CONFIG_KEY])
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    base_artifact = artifact_utils.get_single_instance(input_dict[BASE_MODEL_KEY])
    model_out = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
    model_run = artifact_utils.get_single_instance(output_dict[MODEL_RUN_KEY])
    schema = _schema(input_dict[SCHEMA_KEY])
    transform_graph = (artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY])
                       if input_dict.get(TRANSFORM_GRAPH_KEY) else None)

    splits = artifact_utils.decode_split_names(examples.split_names)
    for split in (config.train_split, config.eval_split):
      if split not in splits:
        raise ConfigError(f'Split {split!r} does not exist in the examples; available: {splits}.')
    raw_label = config.label_key in {f.name for f in schema.feature}
    computed_label = None if raw_label else label_function(base_artifact.uri,
                                                           config.label_key, transform_graph)
    if not raw_label and computed_label is None:
      raise ConfigError(f'label_key {config.label_key!r} is not a feature of the examples '
                        f'(schema features: {sorted(f.name for f in schema.feature)}), nor one '
                        "the model's Transform computes from them.")
    student, base_path = load_base_model(base_artifact.uri, transform_graph, config.output_key)
    task = tasks.task_of(student.output_kind, student.num_outputs, config.task)
    train_uri = artifact_utils.get_split_uri([examples], config.train_split)
    eval_files = artifact_io.files_in(artifact_utils.get_split_uri([examples], config.eval_split))
    raw_spec = _raw_feature_spec(schema)

    staging = os.path.join(model_out.uri, '.staging')
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
    export_dir = os.path.join(staging, SERVING_DIR)
    started = time.time()
    try:
      labels_of = computed_label or (lambda features, _: features[config.label_key])
      if has_keras_metadata(base_path) and student.transform is None and \
          not student.head_names and raw_label:
        method = 'keras_layers'
        trained = keras_pruning.prune_and_export(
            load_keras_model(base_path), base_path, os.path.join(train_uri, '*'), schema,
            config, task,
            model_run.uri, export_dir)
        measured, base_measured = trained['measured'], trained['base_measured']
        pruned_names = trained['pruned_layers']
      else:
        method = 'saved_model_variables'
        teacher = (load_base_model(base_artifact.uri, transform_graph, config.output_key)[0]
                   if config.distillation is not None else None)
        dataset = saved_model_pruning.raw_dataset(artifact_io.files_in(train_uri), raw_spec,
                                                  config.batch_size)
        trained = saved_model_pruning.fine_tune(student, teacher, dataset, labels_of, config,
                                                task, model_run.uri)
        saved_model_pruning.export(student, export_dir)
        pruned_names = trained['pruned_variables']
        measured = saved_model_pruning.measure(export_dir, pruned_names)
        base_measured = saved_model_pruning.measure(base_path, pruned_names)
      train_seconds = time.time() - started
      quality = {which: {f'eval_{task.quality_metric}': saved_model_pruning.served_quality(
          path, eval_files, raw_spec, labels_of, task, config.output_key)}
                 for which, path in (('base', base_path), ('pruned', export_dir))}
      report = self._report(config, task, method, measured, base_measured, pruned_names,
                            quality, trained['final_training_loss'], train_seconds, base_path,
                            export_dir)
      with tf.io.gfile.GFile(os.path.join(staging, REPORT_FILE), 'w') as f:
        f.write(json.dumps(report, indent=1, sort_keys=True))
      for name in tf.io.gfile.listdir(staging):
        name = name.rstrip('/')
        tf.io.gfile.rename(os.path.join(staging, name), os.path.join(model_out.uri, name),
                           overwrite=True)
      tf.io.gfile.rmtree(staging)
    except Exception:
      if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
      raise
    with tf.io.gfile.GFile(os.path.join(model_run.uri, REPORT_FILE), 'w') as f:
      f.write(json.dumps(report, indent=1, sort_keys=True))
    self._set_properties(model_out, report, config, base_artifact)
    metric = task.quality_metric
    logging.info('PrunedModelTrainer: sparsity %.3f (target %.3f), gzip %d -> %d bytes, '
                 'eval %s %.4f -> %.4f', report['achieved_sparsity'], config.target_sparsity,
                 report['base_gzip_bytes'], report['pruned_gzip_bytes'], metric,
                 quality['base'][f'eval_{metric}'], quality['pruned'][f'eval_{metric}'])

  @staticmethod
  def _report(config, task, method, measured, base_measured, pruned_names, quality,
              final_loss, train_seconds, base_path, export_dir) -> Dict[str, Any]:
    metric = f'eval_{task.quality_metric}'
    return {
        'task': task.name, 'pruning_method': method,
        'target_sparsity': config.target_sparsity,
        'achieved_sparsity': measured['sparsity'],
        'per_layer_sparsity': measured['per_layer_sparsity'],
        'pruned_layers': list(pruned_names),
        'base_total_parameters': base_measured['total_parameters'],
        'base_nonzero_parameters': base_measured['nonzero_parameters'],
        'total_parameters': measured['total_parameters'],
        'nonzero_parameters': measured['nonzero_parameters'],
        'base_gzip_bytes': core.gzipped_size(base_path),
        'pruned_gzip_bytes': core.gzipped_size(export_dir),
        'base': quality['base'], 'pruned': quality['pruned'],
        f'{task.quality_metric}_delta': quality['pruned'][metric] - quality['base'][metric],
        'fine_tune_steps': config.fine_tune_steps,
        'final_training_loss': float(final_loss),
        'train_seconds': train_seconds,
        'distillation': (None if config.distillation is None else
                         {'temperature': config.distillation.temperature,
                          'alpha': config.distillation.alpha}),
        'config': json.loads(config.to_json()),
    }

  @staticmethod
  def _set_properties(model_out, report, config, base_artifact):
    for key in ('target_sparsity', 'achieved_sparsity'):
      model_out.set_float_custom_property(key, float(report[key]))
    for key in ('accuracy_delta', 'rmse_delta'):
      if key in report:
        model_out.set_float_custom_property(key, float(report[key]))
    for key in ('total_parameters', 'nonzero_parameters', 'base_gzip_bytes', 'pruned_gzip_bytes',
                'fine_tune_steps'):
      model_out.set_int_custom_property(key, int(report[key]))
    for which in ('base', 'pruned'):
      for metric, value in report[which].items():
        model_out.set_float_custom_property(f'{which}_{metric}', value)
    model_out.set_int_custom_property('distilled', int(config.distillation is not None))
    model_out.set_string_custom_property('base_model', base_artifact.uri)
    model_out.set_string_custom_property('task', report['task'])
