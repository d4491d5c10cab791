"""Pruning a tf_keras model saved with `model.save` (Keras metadata, no Transform layer).

Every prunable layer is wrapped by tfmot's `prune_low_magnitude`, fine-tuned
with `fit` and stripped again; the export reproduces the base model's
`serving_default` (same input and output names).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import tensorflow as tf

from tfx_explain.pruning import core
from tfx_explain.pruning import tasks


def _dataset(files: Sequence[str], schema, config: core.PruningConfig, input_names: List[str]):
  from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top
  source = tfxio.TFExampleRecord(file_pattern=files, schema=schema,
                                 telemetry_descriptors=['tfx_explain', 'PrunedModelTrainer'])
  dataset = source.TensorFlowDataset(tfxio.TensorFlowDatasetOptions(
      batch_size=config.batch_size, label_key=config.label_key, shuffle=True, shuffle_seed=0))
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


def prune_and_export(base, base_path: str, train_files: Sequence[str], schema,
                     config: core.PruningConfig, task: tasks.Task, log_dir: str,
                     export_dir: str) -> Dict[str, Any]:
  """Prunes, fine-tunes and exports; returns what the report needs from training."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  missing = [n for n in base.input_names if n not in {f.name for f in schema.feature}]
  if missing:
    raise core.ConfigError(f'Base model input(s) {missing} are not features of the schema.')
  base_signature = tf.saved_model.load(base_path).signatures.get('serving_default')
  if base_signature is None:
    raise core.ConfigError(f'The base model at {base_path} has no serving_default signature to '
                           'reproduce.')
  [input_name] = list(base_signature.structured_input_signature[1])
  output_keys = sorted(base_signature.structured_outputs)
  pruned_layers = core.prunable_layer_names(base, config.skip_layers)
  pruned = core.prune_model(base, config)
  train = _dataset(train_files, schema, config, base.input_names)
  distil = config.distillation
  if distil is not None:
    # The teacher's outputs ride along with the label.
    train = train.map(lambda x, y: (x, tf.concat(
        [tf.reshape(tf.cast(y, tf.float32), [-1, 1]),
         tf.cast(tf.reshape(base(x, training=False), [tf.shape(y)[0], -1]), tf.float32)],
        axis=-1)))

    def loss(y_true, y_pred):
      return tasks.training_loss(task, y_true[:, 0], y_pred, y_true[:, 1:], distil)
  else:
    def loss(y_true, y_pred):
      return tasks.training_loss(task, y_true, y_pred)
  pruned.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate), loss=loss)
  history = pruned.fit(
      train, steps_per_epoch=config.fine_tune_steps, epochs=1, verbose=0,
      callbacks=core.pruning_callbacks(log_dir) + [
          tf_keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=25)])
  stripped = core.strip(pruned)
  stripped.save(export_dir, save_format='tf', signatures={
      'serving_default': _serving_signature(stripped, schema, config.label_key, input_name,
                                            output_keys)})
  from tfx_explain.engine.loading import load_keras_model  # pylint: disable=g-import-not-at-top
  exported = load_keras_model(export_dir)
  measured = core.weight_sparsity(exported, pruned_layers)
  base_measured = core.weight_sparsity(base, pruned_layers)
  return {
      'pruned_layers': pruned_layers,
      'final_training_loss': float(history.history['loss'][-1]),
      'measured': measured, 'base_measured': base_measured,
  }
