"""What a model predicts decides how it is fine-tuned, distilled and measured.

    kind of output (engine.model)      loss on labels                    distillation          quality
    probability, K > 1 (softmax)       sparse CE on probabilities        T^2 KL, softened      accuracy
    logit, K > 1                       sparse CE from_logits=True        T^2 KL, softened      accuracy
    probability, K = 1 (sigmoid)       binary CE on probabilities        T^2 KL of 2 classes   accuracy
    regression (one linear output)     mean squared error                MSE to the teacher    RMSE
    binary_logit (PruningConfig.task)  binary CE from_logits=True        T^2 KL of 2 classes   accuracy

One linear output reads as a regressor; a binary classifier trained on its
logit says so with `PruningConfig(task='binary_logit')`.

The teacher's and the student's outputs are turned into logits first, so the
same temperature-softened KL (Hinton et al. 2015) serves every classifier.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfx_explain.engine.model import OUTPUT_LOGIT, OUTPUT_PROBABILITY, OUTPUT_REGRESSION

MULTICLASS_PROBABILITY = 'multiclass_probability'
MULTICLASS_LOGIT = 'multiclass_logit'
BINARY_PROBABILITY = 'binary_probability'
BINARY_LOGIT = 'binary_logit'
REGRESSION = 'regression'
TASKS = (MULTICLASS_PROBABILITY, MULTICLASS_LOGIT, BINARY_PROBABILITY, BINARY_LOGIT, REGRESSION)


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  num_outputs: int

  @property
  def is_classifier(self) -> bool:
    return self.name != REGRESSION

  @property
  def quality_metric(self) -> str:
    return 'accuracy' if self.is_classifier else 'rmse'


def task_of(output_kind: str, num_outputs: int, override=None) -> Task:
  if override is not None:
    return Task(override, num_outputs)
  if output_kind == OUTPUT_PROBABILITY:
    return Task(MULTICLASS_PROBABILITY if num_outputs > 1 else BINARY_PROBABILITY, num_outputs)
  if output_kind == OUTPUT_LOGIT and num_outputs > 1:
    return Task(MULTICLASS_LOGIT, num_outputs)
  if output_kind in (OUTPUT_REGRESSION, OUTPUT_LOGIT) and num_outputs == 1:
    return Task(REGRESSION, 1)
  raise ValueError(f'No task for output kind {output_kind!r} with {num_outputs} outputs.')


def as_logits(task: Task, outputs):
  """[batch, classes] logits of a classifier's outputs (a sigmoid becomes two classes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  outputs = tf.cast(outputs, tf.float32)
  if task.name == MULTICLASS_LOGIT:
    return outputs
  if task.name == MULTICLASS_PROBABILITY:
    return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0))
  if task.name == BINARY_PROBABILITY:
    p = tf.clip_by_value(tf.reshape(outputs, [-1, 1]), 1e-7, 1.0 - 1e-7)
    return tf.concat([tf.math.log(1.0 - p), tf.math.log(p)], axis=1)
  if task.name == BINARY_LOGIT:
    logit = tf.reshape(outputs, [-1, 1])
    return tf.concat([tf.zeros_like(logit), logit], axis=1)   # softmax of it is the sigmoid
  raise ValueError('A regressor has no logits.')


def label_loss(task: Task, labels, outputs):
  """Mean loss of the outputs against the labels."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  outputs = tf.cast(outputs, tf.float32)
  if task.name == REGRESSION:
    return tf.reduce_mean(tf.square(tf.reshape(tf.cast(labels, tf.float32), [-1]) -
                                    tf.reshape(outputs, [-1])))
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=as_logits(task, outputs)))


def distillation_term(task: Task, teacher_outputs, student_outputs, temperature: float):
  """T^2 KL(teacher_T || student_T) for classifiers; MSE to the teacher for regressors."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if task.name == REGRESSION:
    return tf.reduce_mean(tf.square(tf.reshape(tf.cast(teacher_outputs, tf.float32), [-1]) -
                                    tf.reshape(tf.cast(student_outputs, tf.float32), [-1])))
  teacher = tf.nn.log_softmax(as_logits(task, teacher_outputs) / temperature, axis=-1)
  student = tf.nn.log_softmax(as_logits(task, student_outputs) / temperature, axis=-1)
  kl = tf.reduce_sum(tf.exp(teacher) * (teacher - student), axis=-1)
  return temperature ** 2 * tf.reduce_mean(kl)


def training_loss(task: Task, labels, outputs, teacher_outputs=None, distillation=None):
  """Loss on the labels, mixed with the distillation term when distilling:
  alpha * label_loss + (1 - alpha) * distillation_term."""
  loss = label_loss(task, labels, outputs)
  if distillation is None:
    return loss
  return distillation.alpha * loss + (1.0 - distillation.alpha) * distillation_term(
      task, teacher_outputs, outputs, distillation.temperature)


def quality(task: Task, labels: np.ndarray, outputs: np.ndarray) -> float:
  """Accuracy of a classifier, root mean squared error of a regressor."""
  labels = np.asarray(labels).reshape(-1)
  outputs = np.asarray(outputs, np.float64).reshape(len(labels), -1)
  if task.name == REGRESSION:
    return float(np.sqrt(np.mean((outputs[:, 0] - labels.astype(np.float64)) ** 2)))
  if task.name == BINARY_PROBABILITY:
    predicted = (outputs[:, 0] > 0.5).astype(np.int64)
  elif task.name == BINARY_LOGIT:
    predicted = (outputs[:, 0] > 0.0).astype(np.int64)
  else:
    predicted = np.argmax(outputs, axis=1)
  return float(np.mean(predicted == labels.astype(np.int64)))
