"""Adapters from what a user or a Trainer hands us to the `ModelFunction` contract.

    a tf_keras functional model with named inputs    -> KerasModelFunction
    a SavedModel signature over dense feature tensors -> SignatureModelFunction
    a Python/TF function of a dict of tensors          -> CallableModelFunction

A SavedModel's saved call (behind its Transform) is adapted in `restored.py`,
image models in `image_model.py`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
from tensorflow.python.autograph.core import ag_ctx  # pylint: disable=g-direct-tensorflow-import

from tfx_explain.engine.model import (DEFAULT_MAX_ROWS, OUTPUT_LOGIT, OUTPUT_PROBABILITY,
                                      OUTPUT_REGRESSION, ModelAccessError, ModelFunction)


def per_example_layout(name: str, shape) -> tuple:
  """(rank, values per example) of a model input; one value or a vector of D."""
  shape = tf.TensorShape(shape)
  if shape.rank is None:
    return 2, 1
  if shape.rank <= 1:
    return shape.rank, 1
  if shape.rank == 2:
    return 2, int(shape[-1]) if shape[-1] is not None else 1
  raise ModelAccessError(
      f'Input {name!r} has shape {shape}; tabular attribution takes one value or a vector of '
      'values per example ([batch], [batch, 1] or [batch, D]). A model on images takes them as '
      '[batch, height, width, channels]; other shapes are not supported.')


def keras_output_kind(model, num_outputs: int) -> str:
  layer = model.layers[-1] if getattr(model, 'layers', None) else None
  activation = getattr(getattr(layer, 'activation', None), '__name__', '')
  if activation in ('softmax', 'sigmoid'):
    return OUTPUT_PROBABILITY
  if num_outputs == 1:
    return OUTPUT_REGRESSION
  return OUTPUT_LOGIT


class KerasModelFunction(ModelFunction):
  """A tf_keras (or Keras 3) functional model with one named input per feature."""

  autograph = False   # see call_keras

  def __init__(self, model, output_kind: Optional[str] = None, max_rows: int = DEFAULT_MAX_ROWS):
    self.model = model
    inputs = model.inputs
    if not inputs:
      raise ModelAccessError('The Keras model has no symbolic inputs; build it with named '
                             'Input layers, one per feature.')
    if isinstance(model.outputs, (list, tuple)) and len(model.outputs) != 1:
      raise ModelAccessError(
          f'The Keras model has {len(model.outputs)} outputs; attributions need exactly one.')
    names, dtypes, ranks, sizes = [], {}, {}, {}
    for tensor, name in zip(inputs, _keras_input_names(model)):
      names.append(name)
      dtypes[name] = tf.as_dtype(tensor.dtype)
      ranks[name], sizes[name] = per_example_layout(name, tensor.shape)
    out_shape = model.outputs[0].shape
    num_outputs = int(out_shape[-1]) if out_shape.rank and out_shape.rank > 1 and out_shape[-1] else 1
    super().__init__(names, dtypes, ranks, output_kind or keras_output_kind(model, num_outputs),
                     num_outputs, max_rows, sizes)

  def _call(self, inputs):
    return call_keras(self.model, inputs)


def call_keras(model, inputs):
  """model(inputs) inside our compiled functions, which trace with autograph=False.

  AutoGraph skips the `keras` package but not `tf_keras`: converting all of
  tf_keras' call machinery makes a first trace take seconds instead of a
  fraction of one, in every worker. The AutoGraph status is switched back on
  for the call itself, so Keras still converts the `call` of user-subclassed
  layers (which may branch on tensors) as it does under Keras 2, and only that.
  """
  with ag_ctx.ControlStatusCtx(status=ag_ctx.Status.ENABLED):
    return model(inputs, training=False)


def _keras_input_names(model) -> List[str]:
  names = getattr(model, 'input_names', None)
  if names:
    return list(names)
  return [t.name.split(':')[0] for t in model.inputs]


class SignatureModelFunction(ModelFunction):
  """A SavedModel signature that takes dense per-feature tensors."""

  autograph = False   # a concrete function: there is no Python to convert

  def __init__(self, signature, output_key: Optional[str] = None,
               output_kind: Optional[str] = None, max_rows: int = DEFAULT_MAX_ROWS,
               signature_name: str = ''):
    self._signature_fn = signature
    spec = signature.structured_input_signature[1]
    if not spec:
      raise ModelAccessError(f'Signature {signature_name!r} takes no named inputs.')
    names, dtypes, ranks, sizes = [], {}, {}, {}
    for name, tensor_spec in sorted(spec.items()):
      if tensor_spec.dtype == tf.string and len(spec) == 1:
        raise ModelAccessError(
            f'Signature {signature_name!r} takes one string tensor {name!r}, which looks like '
            'serialized tf.Examples and cannot be differentiated. Provide a signature whose inputs '
            'are dense feature tensors (one per feature), or save the Keras model itself.')
      names.append(name)
      dtypes[name] = tensor_spec.dtype
      ranks[name], sizes[name] = per_example_layout(name, tensor_spec.shape)
    outputs = signature.structured_outputs
    if output_key is None:
      if len(outputs) != 1:
        raise ModelAccessError(
            f'Signature {signature_name!r} has outputs {sorted(outputs)}; set output_key to choose one.')
      output_key = next(iter(outputs))
    if output_key not in outputs:
      raise ModelAccessError(f'Output {output_key!r} not in signature outputs {sorted(outputs)}.')
    self._output_key = output_key
    out_shape = outputs[output_key].shape
    num_outputs = int(out_shape[-1]) if out_shape.rank and out_shape.rank > 1 and out_shape[-1] else 1
    default_kind = OUTPUT_REGRESSION if num_outputs == 1 else OUTPUT_LOGIT
    super().__init__(names, dtypes, ranks, output_kind or default_kind, num_outputs, max_rows,
                     sizes)

  def _call(self, inputs):
    return self._signature_fn(**inputs)[self._output_key]


class CallableModelFunction(ModelFunction):
  """Wraps a Python/TF function of a dict of [batch] tensors (tests, notebooks)."""

  def __init__(self, fn: Callable[[Dict[str, tf.Tensor]], tf.Tensor], input_names: Sequence[str],
               num_outputs: int = 1, output_kind: Optional[str] = None,
               input_dtypes: Optional[Mapping[str, tf.DType]] = None,
               max_rows: int = DEFAULT_MAX_ROWS):
    dtypes = {n: (input_dtypes or {}).get(n, tf.float32) for n in input_names}
    super().__init__(input_names, dtypes, {n: 1 for n in input_names},
                     output_kind or (OUTPUT_REGRESSION if num_outputs == 1 else OUTPUT_LOGIT),
                     num_outputs, max_rows)
    self._fn = fn

  def _call(self, inputs):
    return self._fn(inputs)
