"""AttributionConfig round-trips through JSON and rejects what it cannot run."""

import pytest

from tfx_explain import (AttributionConfig, ExpectedGradients, GradientTimesInput,
                         IntegratedGradients, KernelShap, Lime, PermutationImportance,
                         SampledShapley, SmoothGrad, VanillaGradients)
from tfx_explain.engine.base import ConfigError


def test_round_trip_keeps_every_option():
  config = AttributionConfig(
      methods=[IntegratedGradients(steps=16, baseline={'a': 1.0}, rule='gauss_legendre'),
               IntegratedGradients(steps='auto', rule='gauss_legendre', tolerance=1e-4,
                                   initial_steps=9, max_steps=256, key='ig_auto'),
               ExpectedGradients(num_samples=50, background_size=8, seed=2),
               SmoothGrad(num_samples=5, multiply_by_input=True), GradientTimesInput(),
               VanillaGradients(), KernelShap(num_samples=100, background_size=7, seed=3),
               SampledShapley(num_permutations=4, baseline='median'), Lime(num_samples=50),
               PermutationImportance(metric='log_loss', key='pi_loss')],
      splits=['eval', 'test'], label_key='y', target=1, slicing_specs=[[], ['a', 'b']],
      max_examples_per_split=10, background_size=9, tf_threads_per_worker=2)
  again = AttributionConfig.from_json(config.to_json())
  assert again == config
  assert again.to_json() == config.to_json()
  assert again.effective_background_size == 9


@pytest.mark.parametrize('kwargs, message', [
    ({'methods': []}, 'methods is empty'),
    ({'methods': ['integrated_gradients']}, 'must be method instances'),
    ({'methods': [IntegratedGradients(), IntegratedGradients(steps=8)]}, 'share the name'),
    ({'splits': 'eval'}, 'splits must be a list'),
    ({'target': 'max'}, "target must be 'predicted' or a class index"),
    ({'max_examples_per_split': 0}, 'max_examples_per_split'),
    ({'slicing_specs': [['']]}, 'slicing spec'),
    ({'tf_threads_per_worker': 0}, 'tf_threads_per_worker must be an integer >= 1'),
    ({'tf_threads_per_worker': 1.5}, 'tf_threads_per_worker must be an integer >= 1'),
    ({'tf_threads_per_worker': True}, 'tf_threads_per_worker must be an integer >= 1'),
])
def test_invalid_configs(kwargs, message):
  settings = {'methods': [IntegratedGradients()]}
  settings.update(kwargs)
  with pytest.raises(ConfigError, match=message):
    AttributionConfig(**settings)


def test_two_of_a_kind_with_keys():
  config = AttributionConfig(methods=[IntegratedGradients(key='ig_zero', baseline='zeros'),
                                      IntegratedGradients(key='ig_mean')])
  assert [m.label for m in config.methods] == ['ig_zero', 'ig_mean']


def test_unknown_method_name():
  with pytest.raises(ConfigError, match="Unknown method 'deeplift'"):
    AttributionConfig.from_json('{"methods": [{"method": "deeplift"}]}')
