"""Pruning a trained model end to end: load, prune and fine-tune, export, measure.

Two ways to prune, chosen by how the base model was saved:
- a tf_keras model saved with `model.save` and no Transform layer: its layers
  are wrapped by tfmot (`keras_model.py`);
- anything else with a saved Keras call — TFX's example modules save with
  `tf.saved_model.save` and attach `model.tft_layer` — is pruned through that
  call and re-exported with every signature and its Transform layer
  (`saved_model.py`).
Either way the loss follows the model's task (softmax, logits, sigmoid or
regression: `tasks.py`), and quality is measured on what each model's
`serving_default` returns for the raw eval examples. No TFX imports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

import tensorflow as tf

from tfx_explain.configurable import ConfigError
from tfx_explain.engine import forest_model
from tfx_explain.engine.loading import (has_keras_metadata, label_function, load_keras_model,
                                        load_restored_model, serving_model_dir)
from tfx_explain.engine.model import ModelAccessError
from tfx_explain.pruning import core
from tfx_explain.pruning import keras_model as keras_pruning
from tfx_explain.pruning import saved_model as saved_model_pruning
from tfx_explain.pruning import tasks
from tfx_explain.pruning.core import PruningConfig


@dataclasses.dataclass
class PruningInputs:
  """Checked inputs of one pruning run."""
  base_model_uri: str
  train_files: List[str]
  eval_files: List[str]
  schema: Any                              # tensorflow_metadata Schema of the raw examples
  transform_graph: Optional[str] = None


def load_base_model(model_uri: str, transform_graph=None, output_key=None):
  """(the base model as a restored function, its path); errors name the folder."""
  path = serving_model_dir(model_uri)
  if not tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    raise ConfigError(f'The base model at {path} is not a SavedModel (no saved_model.pb).')
  if forest_model.forest_assets(path) is not None:
    raise ConfigError(
        f'The base model at {path} is a decision forest (TensorFlow Decision Forests): forests '
        'are not pruned. Magnitude pruning zeroes network weights, and a forest has none; to '
        'shrink it, train it with fewer or shallower trees (num_trees, max_depth). Leave '
        'PrunedModelTrainer out of this pipeline.')
  try:
    return load_restored_model(path, output_key, transform_graph), path
  except ModelAccessError as e:
    raise ConfigError(f'The base model at {path} is not a Keras model PrunedModelTrainer can '
                      f'prune: {e}') from e


def labels_of(config: PruningConfig, inputs: PruningInputs) -> Callable:
  """features, model -> labels: a raw feature, or one the model's Transform computes."""
  features = {f.name for f in inputs.schema.feature}
  if config.label_key in features:
    return lambda batch, _: batch[config.label_key]
  computed = label_function(inputs.base_model_uri, config.label_key, inputs.transform_graph)
  if computed is None:
    raise ConfigError(f'label_key {config.label_key!r} is not a feature of the examples '
                      f'(schema features: {sorted(features)}), nor one '
                      "the model's Transform computes from them.")
  return computed


def _raw_feature_spec(schema):
  from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
  return schema_utils.schema_as_feature_spec(schema).feature_spec


@dataclasses.dataclass
class BaseModel:
  """The loaded base model and what pruning it needs, found before anything is written."""
  student: Any                   # RestoredModelFunction, trained in place
  path: str
  task: tasks.Task
  labels_of: Callable
  raw_label: bool


def load_for_pruning(config: PruningConfig, inputs: PruningInputs) -> BaseModel:
  """Loads the base model and finds its task and labels; errors name what is missing."""
  label = labels_of(config, inputs)
  student, base_path = load_base_model(inputs.base_model_uri, inputs.transform_graph,
                                       config.output_key)
  return BaseModel(student, base_path,
                   tasks.task_of(student.output_kind, student.num_outputs, config.task), label,
                   config.label_key in {f.name for f in inputs.schema.feature})


def prune_and_measure(config: PruningConfig, inputs: PruningInputs, base: BaseModel,
                      model_run_dir: str, export_dir: str) -> Dict[str, Any]:
  """Prunes the base model into `export_dir` (a SavedModel) and returns the report."""
  student, base_path, task, label = base.student, base.path, base.task, base.labels_of
  raw_spec = _raw_feature_spec(inputs.schema)
  started = time.time()
  if has_keras_metadata(base_path) and student.transform is None and \
      not student.head_names and base.raw_label:
    method = 'keras_layers'
    trained = keras_pruning.prune_and_export(
        load_keras_model(base_path), base_path, inputs.train_files, inputs.schema, config, task,
        model_run_dir, export_dir)
    measured, base_measured = trained['measured'], trained['base_measured']
    pruned_names = trained['pruned_layers']
  else:
    method = 'saved_model_variables'
    teacher = (load_base_model(inputs.base_model_uri, inputs.transform_graph,
                               config.output_key)[0]
               if config.distillation is not None else None)
    dataset = saved_model_pruning.raw_dataset(inputs.train_files, raw_spec, config.batch_size)
    trained = saved_model_pruning.fine_tune(student, teacher, dataset, label, config, task,
                                            model_run_dir)
    saved_model_pruning.export(student, export_dir)
    pruned_names = trained['pruned_variables']
    measured = saved_model_pruning.measure(export_dir, pruned_names)
    base_measured = saved_model_pruning.measure(base_path, pruned_names)
  train_seconds = time.time() - started
  metric = f'eval_{task.quality_metric}'
  quality = {which: {metric: saved_model_pruning.served_quality(
      path, inputs.eval_files, raw_spec, label, task, config.output_key)}
             for which, path in (('base', base_path), ('pruned', export_dir))}
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
      'quality_metric': metric,
      f'{task.quality_metric}_delta': quality['pruned'][metric] - quality['base'][metric],
      'fine_tune_steps': config.fine_tune_steps,
      'final_training_loss': float(trained['final_training_loss']),
      'train_seconds': train_seconds,
      'distillation': (None if config.distillation is None else
                       {'temperature': config.distillation.temperature,
                        'alpha': config.distillation.alpha}),
      'config': json.loads(config.to_json()),
  }
