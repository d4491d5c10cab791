"""Pruning a SavedModel through its saved call: models TFX trainer modules write.

TFX's example modules save with `tf.saved_model.save`, so there is no Keras
metadata to rebuild the Keras model (and wrap its layers) from. The SavedModel
still holds the model's variables and its traced call for `training=True`, so
we fine-tune the restored model itself, masking its kernels with
tensorflow-model-optimization's magnitude-pruning implementation and schedule,
then re-export the same object: every signature (`serving_default`,
`transform_features`, ...) and the Transform layer come along unchanged, now
computing with the pruned weights.

    student = load_restored_model(base)        # pruned in place
    report = fine_tune(student, teacher, dataset, config, task, log_dir)
    export(student, export_dir)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfx_explain.pruning import core
from tfx_explain.pruning import tasks


def prunable_variables(variables: Sequence[tf.Variable], skip_layers: Sequence[str] = ()):
  """Kernels and embeddings (rank >= 2), except those of the named layers."""
  chosen = []
  for variable in variables:
    layer = variable.name.split('/')[0]
    if variable.shape.rank is not None and variable.shape.rank >= 2 and layer not in skip_layers:
      chosen.append(variable)
  return chosen


class MagnitudePruning:
  """tfmot's magnitude pruning (masks, thresholds, schedule) over plain variables."""

  def __init__(self, variables: Sequence[tf.Variable], config: core.PruningConfig):
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl  # pylint: disable=g-import-not-at-top
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='pruning_step')
    self.masks = [tf.Variable(tf.ones_like(v), trainable=False, name='mask') for v in variables]
    self.thresholds = [tf.Variable(tf.zeros([], v.dtype), trainable=False, name='threshold')
                       for v in variables]
    self._pruning = pruning_impl.Pruning(
        training_step_fn=lambda: self.step,
        pruning_vars=list(zip(variables, self.masks, self.thresholds)),
        pruning_schedule=core.pruning_schedule(config), block_size=(1, 1),
        block_pooling_type='AVG')

  def after_step(self):
    """Advance the step, update masks when the schedule says so, and apply them."""
    self.step.assign_add(1)
    with tf.control_dependencies([self._pruning.conditional_mask_update()]):
      return self._pruning.weight_mask_op()


def fine_tune(student, teacher, dataset, labels_of, config: core.PruningConfig,
              task: tasks.Task, log_dir: Optional[str]) -> Dict[str, Any]:
  """Fine-tunes the student's model variables on batches of raw features while pruning.

  dataset: batches of (raw features, serialized examples).
  labels_of(features, serialized) -> the batch's labels: a raw feature, or one the
  Transform computes.
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  variables = student.model_variables()
  pruned = prunable_variables(variables, config.skip_layers)
  if not pruned:
    raise core.ConfigError('The base model has no prunable weights (kernels or embeddings) '
                           'outside skip_layers; variables: '
                           f'{[v.name for v in variables]}.')
  pruning = MagnitudePruning(pruned, config)
  optimizer = tf_keras.optimizers.Adam(config.learning_rate)
  distil = config.distillation

  @tf.function
  def train_step(features, serialized):
    labels = labels_of(features, serialized)
    with tf.GradientTape() as tape:
      outputs = student.outputs(features, training=True)
      teacher_outputs = (tf.stop_gradient(teacher.outputs(features)) if distil is not None
                         else None)
      loss = tasks.training_loss(task, labels, outputs, teacher_outputs, distil)
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
    with tf.control_dependencies([pruning.after_step()]):
      return tf.identity(loss)

  writer = tf.summary.create_file_writer(log_dir) if log_dir else None
  losses = []
  for step, (features, serialized) in enumerate(dataset.take(config.fine_tune_steps)):
    loss = float(train_step(features, serialized))
    losses.append(loss)
    if writer is not None and (step % 25 == 0 or step == config.fine_tune_steps - 1):
      with writer.as_default(step=step):
        tf.summary.scalar('loss', loss)
        tf.summary.scalar('sparsity', sparsity_of(pruned)['sparsity'])
  if writer is not None:
    writer.flush()
  if len(losses) < config.fine_tune_steps:
    raise core.ConfigError(f'The train split ran out after {len(losses)} of '
                           f'{config.fine_tune_steps} fine-tuning steps.')
  return {'final_training_loss': losses[-1], 'pruned_variables': [v.name for v in pruned]}


def export(student, export_dir: str) -> None:
  """Re-exports the restored model with all of its signatures (and its Transform layer)."""
  loaded = student.loaded
  tf.saved_model.save(loaded, export_dir, signatures=dict(loaded.signatures))


def sparsity_of(variables: Sequence[tf.Variable]) -> Dict[str, Any]:
  total = zeros = 0
  per_variable = {}
  for variable in variables:
    values = variable.numpy()
    per_variable[variable.name] = float(np.mean(values == 0)) if values.size else 0.0
    total += values.size
    zeros += int(np.sum(values == 0))
  return {'sparsity': zeros / total if total else 0.0, 'per_layer_sparsity': per_variable}


def measure(path: str, pruned_names: Sequence[str]) -> Dict[str, Any]:
  """Sparsity of the named variables and parameter counts of the SavedModel at `path`."""
  loaded = tf.saved_model.load(path)
  variables = [v for v in loaded.variables if v.dtype.is_floating]
  named = [v for v in variables if v.name in set(pruned_names)]
  result = sparsity_of(named)
  result['total_parameters'] = int(sum(np.prod(v.shape) for v in variables))
  result['nonzero_parameters'] = int(sum(np.count_nonzero(v.numpy()) for v in variables))
  return result


def served_quality(path: str, files: List[str], raw_feature_spec: Dict[str, Any], labels_of,
                   task: tasks.Task, output_key: Optional[str] = None,
                   batch_size: int = 1024) -> float:
  """Quality of what `serving_default` returns on raw tf.Examples, streamed in batches."""
  loaded = tf.saved_model.load(path)
  signature = loaded.signatures['serving_default']
  [input_name] = list(signature.structured_input_signature[1])
  outputs = sorted(signature.structured_outputs)
  key = output_key if output_key in outputs else outputs[0] if len(outputs) == 1 else None
  if key is None:
    raise core.ConfigError(f'serving_default of {path} returns {outputs}; set output_key.')
  compression = 'GZIP' if files and files[0].endswith('.gz') else ''
  records = tf.data.TFRecordDataset(files, compression_type=compression).batch(batch_size)
  labels, predictions = [], []
  for batch in records:
    labels.append(np.asarray(labels_of(tf.io.parse_example(batch, raw_feature_spec), batch)))
    predictions.append(signature(**{input_name: batch})[key].numpy().reshape(len(batch), -1))
  if not labels:
    raise core.ConfigError(f'No examples to evaluate in {files}.')
  return tasks.quality(task, np.concatenate([l.reshape(-1) for l in labels]),
                       np.concatenate(predictions))


def raw_dataset(files: List[str], raw_feature_spec: Dict[str, Any], batch_size: int,
                seed: int = 0):
  """Shuffled, repeated batches of (parsed raw features, serialized examples)."""
  compression = 'GZIP' if files and files[0].endswith('.gz') else ''
  records = tf.data.TFRecordDataset(files, compression_type=compression)
  return (records.shuffle(10000, seed=seed, reshuffle_each_iteration=True).repeat()
          .batch(batch_size, drop_remainder=True)
          .map(lambda batch: (tf.io.parse_example(batch, raw_feature_spec), batch)))
