"""Closed forms of the pruning losses (tfx_explain.pruning.tasks), hand-computed with numpy.

No TFX here: these run in seconds.
"""

import numpy as np
import pytest

from tfx_explain import Distillation, PruningConfig
from tfx_explain.configurable import ConfigError
from tfx_explain.pruning import tasks

# Two examples, three classes; teacher and student disagree, and KL(teacher || student)
# differs from KL(student || teacher), so the direction of the divergence is checked too.
TEACHER_LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 1.5, 0.3]], np.float32)
STUDENT_LOGITS = np.array([[0.2, 1.0, 0.1], [1.2, -0.4, 0.9]], np.float32)
LABELS = np.array([0, 2])


def softmax(z, temperature=1.0):
  e = np.exp((np.asarray(z, np.float64) - np.max(z, axis=1, keepdims=True)) / temperature)
  return e / e.sum(axis=1, keepdims=True)


def softened_kl(teacher_logits, student_logits, temperature):
  """T^2 * mean over examples of KL(softmax(teacher / T) || softmax(student / T))."""
  p = softmax(teacher_logits, temperature)
  q = softmax(student_logits, temperature)
  return temperature ** 2 * np.mean(np.sum(p * np.log(p / q), axis=1))


def cross_entropy(labels, logits):
  return -np.mean(np.log(softmax(logits)[np.arange(len(labels)), labels]))


def test_task_losses_and_quality_by_output_kind():
  """Closed forms: each task's loss on a known output, and what quality counts."""
  labels = np.array([0, 1, 1])
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
  probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  expected_ce = -np.mean(np.log(probabilities[np.arange(3), labels]))
  for kind, outputs in (('logit', logits), ('probability', probabilities)):
    task = tasks.task_of(kind, 2)
    assert float(tasks.label_loss(task, labels, outputs)) == pytest.approx(expected_ce, rel=1e-5)
    assert tasks.quality(task, labels, outputs) == pytest.approx(2 / 3)
  sigmoid = tasks.task_of('probability', 1)
  p = np.array([[0.9], [0.2], [0.6]], np.float32)
  expected_bce = -np.mean(labels * np.log(p[:, 0]) + (1 - labels) * np.log(1 - p[:, 0]))
  assert float(tasks.label_loss(sigmoid, labels, p)) == pytest.approx(expected_bce, rel=1e-5)
  binary_logit = tasks.task_of('regression', 1, 'binary_logit')
  z = np.log(p / (1 - p))
  assert float(tasks.label_loss(binary_logit, labels, z)) == pytest.approx(expected_bce, rel=1e-5)
  assert tasks.quality(binary_logit, labels, z) == tasks.quality(sigmoid, labels, p) == 1 / 3
  regression = tasks.task_of('regression', 1)
  y, predictions = np.array([1.0, 2.0, 4.0]), np.array([[1.0], [3.0], [2.0]], np.float32)
  assert float(tasks.label_loss(regression, y, predictions)) == pytest.approx(5 / 3)
  assert tasks.quality(regression, y, predictions) == pytest.approx(np.sqrt(5 / 3))
  # Distillation: zero when the student is the teacher, positive otherwise.
  task = tasks.task_of('logit', 2)
  assert float(tasks.distillation_term(task, logits, logits, 2.0)) == pytest.approx(0, abs=1e-6)
  soft = lambda z: np.exp(z / 2.0) / np.exp(z / 2.0).sum(axis=1, keepdims=True)
  teacher, student = soft(logits), soft(logits[::-1])
  expected_kl = 4.0 * np.mean(np.sum(teacher * np.log(teacher / student), axis=1))
  assert float(tasks.distillation_term(task, logits, logits[::-1], 2.0)) == \
      pytest.approx(expected_kl, rel=1e-5)
  assert float(tasks.distillation_term(regression, predictions, predictions + 1.0, 2.0)) == \
      pytest.approx(1.0)
  with pytest.raises(ConfigError, match='task must be one of'):
    PruningConfig(label_key='y', task='ranking')


@pytest.mark.parametrize('temperature', [1.0, 2.0, 4.0])
def test_distillation_term_is_temperature_squared_kl_of_softened_logits(temperature):
  task = tasks.task_of('logit', 3)
  value = float(tasks.distillation_term(task, TEACHER_LOGITS, STUDENT_LOGITS, temperature))
  assert value == pytest.approx(softened_kl(TEACHER_LOGITS, STUDENT_LOGITS, temperature),
                                rel=1e-5)
  # What a wrong formula would give is far from it: no T^2, the reverse KL, no softening.
  kl_at_t = softened_kl(TEACHER_LOGITS, STUDENT_LOGITS, temperature) / temperature ** 2
  reverse = softened_kl(STUDENT_LOGITS, TEACHER_LOGITS, temperature)
  unsoftened = softened_kl(TEACHER_LOGITS, STUDENT_LOGITS, 1.0)
  if temperature != 1.0:
    assert value != pytest.approx(kl_at_t, rel=1e-2)
    assert value != pytest.approx(unsoftened, rel=1e-2)
  assert value != pytest.approx(reverse, rel=1e-2)


def test_distillation_term_of_probability_outputs_softens_their_log():
  """A softmax model's outputs are turned back into logits (log p) before softening."""
  task = tasks.task_of('probability', 3)
  teacher, student = softmax(TEACHER_LOGITS), softmax(STUDENT_LOGITS)
  value = float(tasks.distillation_term(task, teacher.astype(np.float32),
                                        student.astype(np.float32), 3.0))
  assert value == pytest.approx(softened_kl(np.log(teacher), np.log(student), 3.0), rel=1e-5)


def test_distillation_term_of_binary_models_is_the_two_class_kl():
  """A sigmoid probability p reads as the two classes (1 - p, p); a logit z as (0, z)."""
  p_teacher = np.array([[0.9], [0.3], [0.6]], np.float32)
  p_student = np.array([[0.6], [0.5], [0.2]], np.float32)
  as_two_classes = lambda p: np.log(np.concatenate([1 - p, p], axis=1).astype(np.float64))
  expected = softened_kl(as_two_classes(p_teacher), as_two_classes(p_student), 2.0)
  sigmoid = tasks.task_of('probability', 1)
  assert float(tasks.distillation_term(sigmoid, p_teacher, p_student, 2.0)) == \
      pytest.approx(expected, rel=1e-5)
  binary_logit = tasks.task_of('regression', 1, 'binary_logit')
  logit = lambda p: np.log(p / (1 - p))
  assert float(tasks.distillation_term(binary_logit, logit(p_teacher), logit(p_student),
                                       2.0)) == pytest.approx(expected, rel=1e-5)


def test_distillation_term_of_a_regressor_is_mse_to_the_teacher_whatever_the_temperature():
  regression = tasks.task_of('regression', 1)
  teacher = np.array([[1.0], [2.0], [4.0]], np.float32)
  student = np.array([[1.5], [2.0], [1.0]], np.float32)
  expected = np.mean((teacher - student) ** 2)   # (0.25 + 0 + 9) / 3
  for temperature in (1.0, 5.0):
    assert float(tasks.distillation_term(regression, teacher, student, temperature)) == \
        pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('alpha, temperature', [(0.3, 3.0), (0.5, 2.0), (1.0, 2.0), (0.0, 2.0)])
def test_training_loss_mixes_label_loss_and_distillation_by_alpha(alpha, temperature):
  """alpha * CE(labels, student) + (1 - alpha) * T^2 KL(teacher_T || student_T)."""
  task = tasks.task_of('logit', 3)
  expected = (alpha * cross_entropy(LABELS, STUDENT_LOGITS) +
              (1 - alpha) * softened_kl(TEACHER_LOGITS, STUDENT_LOGITS, temperature))
  value = float(tasks.training_loss(task, LABELS, STUDENT_LOGITS, TEACHER_LOGITS,
                                    Distillation(temperature=temperature, alpha=alpha)))
  assert value == pytest.approx(expected, rel=1e-5)


def test_training_loss_without_distillation_is_the_label_loss():
  task = tasks.task_of('logit', 3)
  assert float(tasks.training_loss(task, LABELS, STUDENT_LOGITS)) == \
      pytest.approx(cross_entropy(LABELS, STUDENT_LOGITS), rel=1e-5)
