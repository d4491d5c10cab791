"""What the base gives every method: value kinds, completeness errors, registration."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import AttributionConfig
from tfx_explain import engine
from tfx_explain.engine.adapters import CallableModelFunction
from tfx_explain.engine.base import AttributionMethod, AttributionResult, method_classes

NAMES = ['a', 'b', 'c']


class FixedValues(AttributionMethod):
  """Returns given attributions and predictions; no name, so it is not registered."""

  def __init__(self, attributions, prediction, baseline_prediction, value_kind='attribution'):
    self.attributions, self.prediction = attributions, prediction
    self.baseline_prediction, self.value_kind = baseline_prediction, value_kind
    self.key = 'fixed'

  def _attribute(self, model, features, reference, target, labels, example_ids):
    n = len(example_ids)
    return AttributionResult(self.label, list(model.input_names), np.asarray(self.attributions),
                             np.zeros(n, np.int32), np.asarray(self.prediction),
                             np.asarray(self.baseline_prediction))


def small_model():
  def fn(inputs):
    a, b, c = (tf.cast(inputs[n], tf.float32) for n in NAMES)
    return tf.stack([a * b + c, tf.tanh(a) - 2.0 * c], axis=1)
  return CallableModelFunction(fn, NAMES, num_outputs=2)


def features(n=8):
  rng = np.random.default_rng(0)
  return {name: rng.normal(size=n).astype(np.float32) for name in NAMES}


def test_the_base_computes_completeness_of_attributions_only():
  model, rows = small_model(), features(2)
  values = [[1.0, 2.0, np.nan], [0.5, -1.0, 0.25]]   # NaN: a skipped feature
  result = FixedValues(values, [4.0, 1.0], [0.5, 2.0]).attribute(model, rows)
  np.testing.assert_allclose(result.completeness_error, [abs(3.0 - 3.5), abs(-0.25 + 1.0)])
  assert result.value_kind == 'attribution'
  gradients = FixedValues(values, [4.0, 1.0], [0.5, 2.0], 'gradient').attribute(model, rows)
  assert gradients.value_kind == 'gradient' and gradients.completeness_error is None
  unreferenced = FixedValues(values, [4.0, 1.0], [np.nan, np.nan]).attribute(model, rows)
  assert unreferenced.completeness_error is None


def test_every_tabular_method_gets_the_same_completeness_rule():
  model, rows = small_model(), features()
  labels = np.argmax(model.predict(rows), axis=1)
  for cls in method_classes(image=False):
    if cls.requires_forest or cls.token_method:   # forests: tests/test_tfdf_forests.py;
      continue                                      # texts: tests/test_engine_text.py
    method = cls()
    result = method.attribute(model, rows, labels=labels)
    assert result.value_kind == method.value_kind, cls
    if method.value_kind != 'attribution' or np.isnan(result.baseline_prediction).all():
      assert result.completeness_error is None, cls
      continue
    expected = np.abs(np.nansum(result.attributions, axis=1) -
                      (result.prediction - result.baseline_prediction))
    np.testing.assert_allclose(result.completeness_error, expected, rtol=1e-12, atol=1e-12,
                               err_msg=cls.__name__)


class CountingModel(CallableModelFunction):
  """Counts model calls on the examples themselves (batches of their size)."""

  def __init__(self, *args, examples, **kwargs):
    super().__init__(*args, **kwargs)
    self.examples, self.calls_on_examples = examples, 0

  def predict_split(self, float_matrix, others):
    self.calls_on_examples += int(float_matrix.shape[0] == self.examples)
    return super().predict_split(float_matrix, others)


def test_methods_that_need_f_of_x_read_the_outputs_given_instead_of_predicting():
  """One forward pass per batch serves every method: given outputs are used as they are."""
  rows = features(7)
  reference_model = small_model()
  outputs = reference_model.predict(rows)
  labels = np.argmax(outputs, axis=1)
  reference = engine.ReferenceStats.from_features(features(50), background_size=10)
  for cls in method_classes(image=False):
    # Fixed-step IG evaluates x itself; forests: test_tfdf_forests.py; texts: test_engine_text.py.
    if not cls().uses_outputs or cls.requires_forest or cls.token_method:
      continue
    model = CountingModel(small_model()._fn, NAMES, num_outputs=2, examples=7)  # pylint: disable=protected-access
    own = cls().attribute(model, rows, reference, labels=labels)
    predicted = model.calls_on_examples
    model.calls_on_examples = 0
    shared = cls().attribute(model, rows, reference, labels=labels, outputs=outputs)
    assert model.calls_on_examples == predicted - 1, cls
    np.testing.assert_allclose(shared.attributions, own.attributions, rtol=1e-6, atol=1e-7,
                               err_msg=cls.__name__)
    # The outputs given decide the explained class: swap the two outputs and it follows.
    swapped = cls().attribute(model, rows, reference, labels=labels, outputs=outputs[:, ::-1])
    if cls.name != 'permutation_importance':   # explains the labels, not the prediction
      np.testing.assert_array_equal(swapped.target, 1 - own.target, err_msg=cls.__name__)


def test_outputs_for_another_number_of_examples_are_refused():
  with pytest.raises(ValueError, match='outputs for 3 examples given with 8 examples'):
    engine.VanillaGradients().attribute(small_model(), features(), outputs=np.zeros((3, 2)))


def test_example_ids_must_match_the_examples():
  with pytest.raises(ValueError, match='2 example ids for 8 examples'):
    engine.VanillaGradients().attribute(small_model(), features(), example_ids=[0, 1])


def exported_methods():
  exported = [getattr(engine, name) for name in engine.__all__]
  # AttributionMethod itself is exported too; methods are the subclasses with a name.
  return [c for c in exported if isinstance(c, type) and issubclass(c, AttributionMethod) and
          c.name]


def test_every_exported_method_is_registered_and_round_trips_through_config_json():
  classes = exported_methods()
  assert sorted(c.name for c in classes) == AttributionMethod.known()
  assert AttributionMethod.known(image=True) == sorted(c.name for c in classes if c.image_method)
  assert AttributionMethod.known(image=False) == sorted(
      c.name for c in classes if not c.image_method)
  for cls in classes:
    config = AttributionConfig(methods=[cls()])
    again = AttributionConfig.from_json(config.to_json())
    assert again == config and type(again.methods[0]) is cls
    assert getattr(tfx_explain, cls.__name__) is cls


def test_importing_any_engine_module_registers_every_method_and_the_package_stays_light():
  code = ('import sys, tfx_explain\n'
          "assert 'tensorflow' not in sys.modules and 'tfx' not in sys.modules\n"
          'from tfx_explain.engine.base import AttributionMethod\n'
          'import json; print(json.dumps(AttributionMethod.known()))\n')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout.strip().splitlines()[-1]) == AttributionMethod.known()
