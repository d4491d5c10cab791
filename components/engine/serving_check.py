"""Explain the served function: check that what we evaluate is what `serving_default` computes.

A SavedModel's `serving_default` usually parses serialized tf.Examples, which
cannot be differentiated, so the engine evaluates the model another way (the
Keras model, its saved call, its Transform layer in front). If that way
differs from serving — a Transform skipped because it kept the raw feature
names, a preprocessing step only the signature applies, another head — the
attributions would explain a function nobody serves. Before attributing, the
same examples go through both; a gap beyond the tolerance is an error.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tfx_explain.engine.model import ModelAccessError, ModelFunction

# Relative to max(1, |served output|): float32 noise, not a different function.
DEFAULT_TOLERANCE = 1e-4
# Examples sent through both before a run.
SAMPLE_SIZE = 64


@dataclasses.dataclass
class ServingAgreement:
  signature: str
  output: str
  examples: int
  max_gap: float
  path_used: str


def serving_function(loaded, signature_name: str):
  """The signature if it takes one string tensor (serialized examples), else None."""
  signature = loaded.signatures.get(signature_name)
  if signature is None:
    return None
  inputs = signature.structured_input_signature[1]
  if len(inputs) != 1 or next(iter(inputs.values())).dtype != tf.string:
    return None
  return signature


def describe_path(model: ModelFunction) -> str:
  transform = getattr(model, 'transform', None)
  via = f' behind the Transform layer of {transform.source}' if transform is not None else ''
  return f'{type(model).__name__} over {model.input_names}{via}'


def check_serving_agreement(model: ModelFunction, loaded, model_path: str,
                            serialized: Sequence[bytes], features: Mapping[str, np.ndarray],
                            signature_name: str = 'serving_default',
                            output_key: Optional[str] = None,
                            tolerance: float = DEFAULT_TOLERANCE) -> Optional[ServingAgreement]:
  """Compares model.predict(features) with the serving signature on the same serialized examples.

  `features` are the decoded `serialized`, row for row. Returns None when the
  model has no signature of that name taking serialized examples (then the
  engine evaluates the served function itself). Raises ModelAccessError
  naming the model, the signature, the path used and the largest gap.
  """
  signature = serving_function(loaded, signature_name)
  if signature is None or not len(serialized):
    logging.info('Not compared with %r of %s: %s.', signature_name, model_path,
                 'no examples' if signature is not None else
                 'it does not take serialized examples')
    return None
  [input_name] = list(signature.structured_input_signature[1])
  served = signature(**{input_name: tf.constant(list(serialized))})
  key = _served_output_key(served, output_key, model.num_outputs, model_path, signature_name)
  expected = np.asarray(served[key].numpy(), np.float64).reshape(len(serialized), -1)
  actual = np.asarray(model.predict(features), np.float64).reshape(len(serialized), -1)
  if expected.shape != actual.shape:
    raise ModelAccessError(
        f'The model at {model_path} serves {expected.shape[1]} value(s) per example from '
        f'{signature_name!r} output {key!r}, but the function we would explain '
        f'({describe_path(model)}) gives {actual.shape[1]}. Set output_key to the served head.')
  gap = np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
  worst = float(gap.max()) if gap.size else 0.0
  if not np.isfinite(worst) or worst > tolerance:
    row, column = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(gap), gap, np.inf))),
                                   gap.shape)
    raise ModelAccessError(
        f'The function we would explain is not the one the model at {model_path} serves: on '
        f'{len(serialized)} examples, {signature_name!r} output {key!r} and '
        f'{describe_path(model)} differ by up to {worst:.3g} (relative; tolerance '
        f'{tolerance:g}), e.g. example {int(row)} output {int(column)}: served '
        f'{expected[row, column]:.6g}, ours {actual[row, column]:.6g}. A Transform step the '
        'model input names do not reveal is the usual cause: give AttributionGen the Transform '
        "component's transform_graph (with the raw examples), or save the model with "
        '`model.tft_layer = tf_transform_output.transform_features_layer()` as TFX examples do.')
  return ServingAgreement(signature_name, key, len(serialized), worst, describe_path(model))


def _served_output_key(served, output_key, num_outputs, model_path, signature_name) -> str:
  keys = sorted(served)
  if output_key is not None and output_key in served:
    return output_key
  if len(keys) == 1:
    return keys[0]

  def values_per_example(tensor):
    return 1 if tensor.shape.rank == 1 else int(tensor.shape[1]) if tensor.shape.rank == 2 else -1

  fitting = [k for k in keys if values_per_example(served[k]) == num_outputs]
  if len(fitting) == 1 and output_key is None:
    return fitting[0]
  if output_key is not None:
    raise ModelAccessError(
        f'{signature_name!r} of the model at {model_path} returns {keys}, not the head '
        f'{output_key!r} being explained, so the two cannot be compared. Name the served '
        "output after the model's head.")
  raise ModelAccessError(
      f'{signature_name!r} of the model at {model_path} returns {keys}; set output_key to the '
      'output to explain.')
