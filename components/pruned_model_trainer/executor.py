"""PrunedModelTrainer executor: prune, fine-tune, strip, export, measure, publish.

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

from tfx_explain.configurable import ConfigError
from tfx_explain.engine.loading import load_keras_model, serving_model_dir
from tfx_explain.pruning import core
from tfx_explain.pruning.core import PruningConfig

EXAMPLES_KEY = 'examples'
SCHEMA_KEY = 'schema'
BASE_MODEL_KEY = 'base_model'
MODEL_KEY = 'model'
MODEL_RUN_KEY = 'model_run'
CONFIG_KEY = 'config'
REPORT_FILE = 'pruning_report.json'
SERVING_DIR = 'Format-Serving'


def load_base_keras_model(model_uri: str):
  path = serving_model_dir(model_uri)
  if not tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    raise ConfigError(f'The base model at {path} is not a SavedModel (no saved_model.pb).')
  try:
    model = load_keras_model(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f'The base model at {path} is not a Keras model ({type(e).__name__}: '
                      f'{str(e).splitlines()[0][:200]}); PrunedModelTrainer prunes tf_keras '
                      'models saved by Trainer.') from e
  if not getattr(model, 'layers', None) or not getattr(model, 'inputs', None):
    raise ConfigError(f'The base model at {path} is not a Keras functional or sequential '
                      'model with layers; PrunedModelTrainer prunes tf_keras models.')
  return model, path


def _schema(schema_artifacts):
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  uri = artifact_utils.get_single_uri(schema_artifacts)
  return io_utils.parse_pbtxt_file(io_utils.get_only_uri_in_dir(uri), schema_pb2.Schema())


def _dataset(examples, split, schema, config, input_names, num_epochs=None):
  from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top
  files = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  source = tfxio.TFExampleRecord(file_pattern=files, schema=schema,
                                 telemetry_descriptors=['tfx_explain', 'PrunedModelTrainer'])
  dataset = source.TensorFlowDataset(tfxio.TensorFlowDatasetOptions(
      batch_size=config.batch_size, label_key=config.label_key, num_epochs=num_epochs,
      shuffle=num_epochs is None, shuffle_seed=0))
  return dataset.map(lambda features, label: (
      {name: features[name] for name in input_names}, label))


def _serving_signature(model, schema, label_key, input_name, output_keys):
  from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
  feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  feature_spec.pop(label_key, None)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=input_name)])
  def serve(serialized):
    parsed = tf.io.parse_example(serialized, feature_spec)
    outputs = model({name: parsed[name] for name in model.input_names})
    return {key: outputs for key in output_keys}

  return serve


class Executor(base_executor.BaseExecutor):
  """Prunes the base model and exports a standard Model."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    import tf_keras  # pylint: disable=g-import-not-at-top
    self._log_startup(input_dict, output_dict, exec_properties)
    config = PruningConfig.from_json(exec_properties[CONFIG_KEY])
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    base_artifact = artifact_utils.get_single_instance(input_dict[BASE_MODEL_KEY])
    model_out = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
    model_run = artifact_utils.get_single_instance(output_dict[MODEL_RUN_KEY])
    schema = _schema(input_dict[SCHEMA_KEY])

    splits = artifact_utils.decode_split_names(examples.split_names)
    for split in (config.train_split, config.eval_split):
      if split not in splits:
        raise ConfigError(f'Split {split!r} does not exist in the examples; available: {splits}.')
    if config.label_key not in {f.name for f in schema.feature}:
      raise ConfigError(f'label_key {config.label_key!r} is not a feature of the examples '
                        f'(schema features: {sorted(f.name for f in schema.feature)}).')
    base, base_path = load_base_keras_model(base_artifact.uri)
    missing = [n for n in base.input_names if n not in {f.name for f in schema.feature}]
    if missing:
      raise ConfigError(f'Base model input(s) {missing} are not features of the schema.')
    base_signature = tf.saved_model.load(base_path).signatures.get('serving_default')
    if base_signature is None:
      raise ConfigError(f'The base model at {base_path} has no serving_default signature to '
                        'reproduce.')
    [input_name] = list(base_signature.structured_input_signature[1])
    output_keys = sorted(base_signature.structured_outputs)
    num_classes = int(base.outputs[0].shape[-1])
    pruned_layers = core.prunable_layer_names(base, config.skip_layers)
    pruned = core.prune_model(base, config)

    train = _dataset(examples, config.train_split, schema, config, base.input_names)
    if config.distillation is not None:
      distil = config.distillation
      # Teacher probabilities ride along with the one-hot label.
      train = train.map(lambda x, y: (x, tf.concat(
          [tf.one_hot(tf.reshape(tf.cast(y, tf.int32), [-1]), num_classes),
           base(x, training=False)], axis=-1)))
      loss = core.distillation_loss(distil.temperature, distil.alpha, num_classes)
    else:
      loss = tf_keras.losses.SparseCategoricalCrossentropy()
    pruned.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate), loss=loss)
    log_dir = model_run.uri
    started = time.time()
    history = pruned.fit(
        train, steps_per_epoch=config.fine_tune_steps, epochs=1, verbose=0,
        callbacks=core.pruning_callbacks(log_dir) + [
            tf_keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=25)])
    train_seconds = time.time() - started
    stripped = core.strip(pruned)

    staging = os.path.join(model_out.uri, '.staging')
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
    try:
      export_dir = os.path.join(staging, SERVING_DIR)
      stripped.save(export_dir, save_format='tf', signatures={
          'serving_default': _serving_signature(stripped, schema, config.label_key, input_name,
                                                output_keys)})
      exported = load_keras_model(export_dir)
      measured = core.weight_sparsity(exported, pruned_layers)
      base_measured = core.weight_sparsity(base, pruned_layers)
      quality = {}
      for name, candidate in (('base', base), ('pruned', exported)):
        candidate.compile(loss=tf_keras.losses.SparseCategoricalCrossentropy(),
                          metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name='accuracy')])
        loss_value, accuracy = candidate.evaluate(
            _dataset(examples, config.eval_split, schema, config, base.input_names, num_epochs=1),
            verbose=0)
        quality[name] = {'eval_loss': float(loss_value), 'eval_accuracy': float(accuracy)}
      report = {
          'target_sparsity': config.target_sparsity,
          'achieved_sparsity': measured['sparsity'],
          'per_layer_sparsity': measured['per_layer_sparsity'],
          'pruned_layers': pruned_layers,
          'base_total_parameters': base_measured['total_parameters'],
          'base_nonzero_parameters': base_measured['nonzero_parameters'],
          'total_parameters': measured['total_parameters'],
          'nonzero_parameters': measured['nonzero_parameters'],
          'base_gzip_bytes': core.gzipped_size(base_path),
          'pruned_gzip_bytes': core.gzipped_size(export_dir),
          'base': quality['base'], 'pruned': quality['pruned'],
          'accuracy_delta': quality['pruned']['eval_accuracy'] - quality['base']['eval_accuracy'],
          'fine_tune_steps': config.fine_tune_steps,
          'final_training_loss': float(history.history['loss'][-1]),
          'train_seconds': train_seconds,
          'distillation': (None if config.distillation is None else
                           {'temperature': config.distillation.temperature,
                            'alpha': config.distillation.alpha}),
          'config': json.loads(config.to_json()),
      }
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
    for key in ('target_sparsity', 'achieved_sparsity', 'accuracy_delta'):
      model_out.set_float_custom_property(key, float(report[key]))
    for key in ('total_parameters', 'nonzero_parameters', 'base_gzip_bytes', 'pruned_gzip_bytes',
                'fine_tune_steps'):
      model_out.set_int_custom_property(key, int(report[key]))
    for which in ('base', 'pruned'):
      for metric, value in report[which].items():
        model_out.set_float_custom_property(f'{which}_{metric}', value)
    model_out.set_int_custom_property('distilled', int(config.distillation is not None))
    model_out.set_string_custom_property('base_model', base_artifact.uri)
    logging.info('PrunedModelTrainer: sparsity %.3f (target %.3f), gzip %d -> %d bytes, '
                 'accuracy %.4f -> %.4f', report['achieved_sparsity'], config.target_sparsity,
                 report['base_gzip_bytes'], report['pruned_gzip_bytes'],
                 quality['base']['eval_accuracy'], quality['pruned']['eval_accuracy'])
