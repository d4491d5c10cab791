"""Model adapters: one differentiable, batched view of a model for every method.

A method never touches Keras or SavedModel APIs directly. It sees a
`ModelFunction`: named scalar inputs (one value per example), a batched
`predict`, and `target_gradients` with respect to the float inputs, both
compiled once with `tf.function` and chunked so memory stays bounded.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.autograph.core import ag_ctx  # pylint: disable=g-direct-tensorflow-import

Features = Mapping[str, np.ndarray]

# Rows per model call. Large enough to keep the CPU busy, small enough that
# N examples x M interpolation points never needs more than ~100 MB at once.
DEFAULT_MAX_ROWS = 32768

OUTPUT_PROBABILITY = 'probability'
OUTPUT_LOGIT = 'logit'
OUTPUT_REGRESSION = 'regression'


class ModelAccessError(ValueError):
  """The model cannot be evaluated or differentiated the way we need."""


def _is_float(dtype: tf.DType) -> bool:
  return dtype.is_floating


def element_name(name: str, index: int) -> str:
  """The attributed feature for element `index` of a vector input: `x[3]`."""
  return f'{name}[{index}]'


class ModelFunction:
  """A model as a function of named per-example scalar features.

  Subclasses provide `_call(inputs) -> outputs [batch, K]` where inputs is a
  dict of tensors shaped like the model expects, keyed by `model_inputs`.
  A vector input `x` of D values per example is attributed per element: its
  features are `x[0]` ... `x[D-1]` (`input_names`), reassembled into one
  [batch, D] tensor for the model.
  """

  # Whether our compiled functions run through AutoGraph. Only needed when the
  # wrapped Python code branches on tensors (see CallableModelFunction).
  autograph = True

  def __init__(self, input_names: Sequence[str], input_dtypes: Mapping[str, tf.DType],
               input_ranks: Mapping[str, int], output_kind: str, num_outputs: int,
               max_rows: int = DEFAULT_MAX_ROWS, input_sizes: Optional[Mapping[str, int]] = None):
    sizes = dict(input_sizes or {})
    self.model_inputs: List[str] = list(input_names)
    self._model_dtypes: Dict[str, tf.DType] = dict(input_dtypes)
    # Vector inputs (D > 1 values per example) and the features they expand to.
    self.vector_inputs: Dict[str, int] = {n: int(sizes[n]) for n in self.model_inputs
                                          if int(sizes.get(n, 1)) > 1}
    self.elements: Dict[str, List[str]] = {
        n: [element_name(n, i) for i in range(d)] for n, d in self.vector_inputs.items()}
    self.input_names: List[str] = []
    self.input_dtypes: Dict[str, tf.DType] = {}
    for name in self.model_inputs:
      for feature in self.elements.get(name, [name]):
        self.input_names.append(feature)
        self.input_dtypes[feature] = self._model_dtypes[name]
    self._input_ranks = dict(input_ranks)
    self.output_kind = output_kind
    self.num_outputs = int(num_outputs)
    self.max_rows = int(max_rows)
    self._float_typed = [n for n in self.input_names if _is_float(self.input_dtypes[n])]
    self._float_features: Optional[List[str]] = None
    self._predict_fn = None
    self._grad_fn = None

  # -- which inputs gradients reach ---------------------------------------
  @property
  def float_features(self) -> List[str]:
    """Float inputs with a differentiable path to the output: what gradients attribute.

    A float input whose every path is cut by a non-differentiable op (bucketised
    by a Transform, cast to an id, unused) is not among them: gradient methods
    treat it like a string or integer input (`other_features`).
    """
    if self._float_features is None:
      reached = self._differentiable_inputs()
      self._float_features = [n for n in self._float_typed if n in reached]
    return self._float_features

  @property
  def other_features(self) -> List[str]:
    floats = set(self.float_features)
    return [n for n in self.input_names if n not in floats]

  @property
  def discrete_features(self) -> List[str]:
    """Inputs gradients cannot reach: strings, integers and cut float paths."""
    return self.other_features

  def _differentiable_inputs(self) -> set:
    """Float inputs the output's gradient reaches, found symbolically in one trace."""
    if not self._float_typed:
      return set()
    reached = {}
    specs = [tf.TensorSpec([None], self.input_dtypes[n]) for n in self.input_names]

    def probe(*columns):
      by_feature = dict(zip(self.input_names, columns))
      watched = [by_feature[n] for n in self._float_typed]
      with tf.GradientTape() as tape:
        for tensor in watched:
          tape.watch(tensor)
        total = tf.reduce_sum(self._outputs_2d(self._call(self._model_inputs_from(by_feature))))
      gradients = tape.gradient(total, watched)
      reached.update({n: g is not None for n, g in zip(self._float_typed, gradients)})
      return total

    try:
      tf.function(probe, input_signature=specs, autograph=self.autograph).get_concrete_function()
    except (LookupError, TypeError, ValueError):
      # An op without a registered gradient on some path: count every float input as
      # reachable, and let the gradient methods raise the error that names the op.
      return set(self._float_typed)
    return {n for n, ok in reached.items() if ok}

  # -- to be provided by subclasses --------------------------------------
  def _call(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    raise NotImplementedError

  # -- helpers -----------------------------------------------------------
  def _shape_input(self, name: str, column: tf.Tensor) -> tf.Tensor:
    """[batch] column -> the rank the model input declares."""
    column = tf.cast(column, self._model_dtypes[name]) if column.dtype != tf.string else column
    if self._input_ranks.get(name, 2) >= 2:
      return tf.expand_dims(column, -1)
    return column

  def _outputs_2d(self, outputs: tf.Tensor) -> tf.Tensor:
    outputs = tf.convert_to_tensor(outputs)
    if outputs.shape.rank == 1:
      outputs = tf.expand_dims(outputs, -1)
    return tf.cast(outputs, tf.float32)

  def _signature(self):
    float_spec = tf.TensorSpec([None, len(self.float_features)], tf.float32)
    others = [tf.TensorSpec([None], self.input_dtypes[n]) for n in self.other_features]
    return float_spec, others

  def _assemble(self, float_matrix, others):
    # One unstack rather than a slice per feature: the gradient of F slices is F
    # full-size padded tensors summed (O(F^2) per row), that of an unstack one stack.
    columns = tf.unstack(float_matrix, num=len(self.float_features), axis=1) \
        if self.float_features else []
    by_feature = dict(zip(self.float_features, columns))
    by_feature.update(zip(self.other_features, others))
    return self._model_inputs_from(by_feature)

  def _model_inputs_from(self, by_feature):
    """Per-feature [batch] columns -> the model's inputs (vectors reassembled)."""
    inputs = {}
    for name in self.model_inputs:
      if name in self.elements:
        stacked = tf.stack([by_feature[e] for e in self.elements[name]], axis=1)
        inputs[name] = tf.cast(stacked, self._model_dtypes[name]) \
            if stacked.dtype != tf.string else stacked
      else:
        inputs[name] = self._shape_input(name, by_feature[name])
    return inputs

  def element_features(self, features: Features) -> Features:
    """Features with each vector input given whole ([N, D] under `x`) split into `x[i]`."""
    if not self.vector_inputs or all(e in features for e in self.input_names):
      return features
    expanded = dict(features)
    for name, size in self.vector_inputs.items():
      if name in features and self.elements[name][0] not in features:
        values = np.asarray(features[name])
        values = values.reshape(len(values), -1)
        if values.shape[1] != size:
          raise ModelAccessError(f'Feature {name!r} has {values.shape[1]} values per example; '
                                 f'the model input takes {size}.')
        for i, element in enumerate(self.elements[name]):
          expanded[element] = values[:, i]
    return expanded

  def _compile(self):
    if self._predict_fn is not None:
      return
    float_spec, other_specs = self._signature()

    @tf.function(input_signature=[float_spec, other_specs], reduce_retracing=True,
                 autograph=self.autograph)
    def predict_fn(float_matrix, others):
      return self._outputs_2d(self._call(self._assemble(float_matrix, others)))

    @tf.function(input_signature=[float_spec, other_specs, tf.TensorSpec([None], tf.int32)],
                 reduce_retracing=True, autograph=self.autograph)
    def grad_fn(float_matrix, others, targets):
      with tf.GradientTape() as tape:
        tape.watch(float_matrix)
        outputs = self._outputs_2d(self._call(self._assemble(float_matrix, others)))
        selected = tf.gather(outputs, targets, axis=1, batch_dims=1)
        # Rows are independent, so d(sum)/d(row) is each row's own gradient.
        total = tf.reduce_sum(selected)
      grads = tape.gradient(total, float_matrix)
      if grads is None:
        grads = tf.zeros_like(float_matrix)
      return selected, grads

    @tf.function(input_signature=[
        float_spec, tf.TensorSpec([len(self.float_features)], tf.float32),
        tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32), other_specs,
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)],
                 reduce_retracing=True, autograph=self.autograph)
    def path_fn(x, baseline, alphas, weights, others, targets, x_index):
      # Every interpolation point of every example in one batch: row (i, k)
      # is baseline + alphas[k] * (x[i] - baseline). Point x_index is x itself,
      # so the same pass gives the prediction, and the predicted class where
      # targets[i] < 0.
      n, m = tf.shape(x)[0], tf.shape(alphas)[0]
      delta = x - baseline
      points = tf.reshape(baseline + alphas[None, :, None] * delta[:, None, :],
                          [n * m, len(self.float_features)])
      repeated = [tf.repeat(o, m) for o in others]
      with tf.GradientTape() as tape:
        tape.watch(points)
        outputs = self._outputs_2d(self._call(self._assemble(points, repeated)))
        outputs = tf.reshape(outputs, [n, m, tf.shape(outputs)[-1]])
        at_x = outputs[:, x_index, :]
        chosen = tf.where(targets < 0, tf.argmax(at_x, axis=1, output_type=tf.int32), targets)
        selected = tf.gather(outputs, chosen, axis=2, batch_dims=1)
        total = tf.reduce_sum(selected)
      grads = tape.gradient(total, points)
      if grads is None:
        grads = tf.zeros_like(points)
      grads = tf.reshape(grads, [n, m, len(self.float_features)])
      mean_grads = tf.reduce_sum(grads * weights[None, :, None], axis=1)
      return selected, mean_grads, at_x, chosen

    self._predict_fn = _ConcreteCall(predict_fn)
    self._grad_fn = _ConcreteCall(grad_fn)
    self._path_fn = _ConcreteCall(path_fn)

  def split(self, features: Features):
    """Features dict -> (float matrix [N, F_float], [other columns])."""
    features = self.element_features(features)
    missing = [n for n in self.input_names if n not in features]
    if missing:
      raise ModelAccessError(
          f'Model input(s) {missing} are missing from the features given '
          f'(got {sorted(features)}).')
    n = len(np.asarray(features[self.input_names[0]]))
    if self.float_features:
      matrix = np.stack([np.asarray(features[f], dtype=np.float32).reshape(-1)
                         for f in self.float_features], axis=1)
    else:
      matrix = np.zeros((n, 0), np.float32)
    others = [to_model_column(features[f], self.input_dtypes[f]) for f in self.other_features]
    return matrix, others

  # -- public API ----------------------------------------------------------
  def predict_split(self, float_matrix: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """Outputs [N, K] for a split batch; chunked by max_rows.

    Other (non-float) columns may be numpy arrays or tensors already.
    """
    self._compile()
    n = float_matrix.shape[0]
    chunks = []
    for start in range(0, n, self.max_rows):
      stop = min(n, start + self.max_rows)
      whole = start == 0 and stop == n   # slicing a string tensor copies every string
      chunks.append(self._predict_fn(
          tf.constant(float_matrix[start:stop], tf.float32),
          [tf.convert_to_tensor(o if whole else o[start:stop]) for o in others]).numpy())
    if not chunks:
      return np.zeros((0, self.num_outputs), np.float32)
    return np.concatenate(chunks, axis=0)

  def predict(self, features: Features) -> np.ndarray:
    matrix, others = self.split(features)
    return self.predict_split(matrix, others)

  def path_gradients(self, float_matrix: np.ndarray, baseline: np.ndarray, alphas: np.ndarray,
                     weights: np.ndarray, others: Sequence[np.ndarray], targets: np.ndarray):
    """Integrated-gradient path sums for every example, and the outputs at x, in one pass.

    targets[i] < 0 explains example i's predicted (argmax) class.
    Returns (outputs along the path [N, m] for the explained class,
    sum_k weights_k * grad at point k [N, F_float], all outputs at x [N, K],
    the explained class [N]). Examples are chunked so N x m rows stay within max_rows.
    """
    self._compile()
    n, m = float_matrix.shape[0], len(alphas)
    alphas, weights = np.asarray(alphas, np.float64), np.asarray(weights, np.float64)
    ones = np.nonzero(alphas == 1.0)[0]
    if len(ones):
      x_index = int(ones[0])
    else:   # x is not on the rule's grid: add it with weight 0
      alphas, weights, x_index = np.append(alphas, 1.0), np.append(weights, 0.0), m
    step = max(1, self.max_rows // len(alphas))
    outs, grads, at_x, chosen = [], [], [], []
    targets = np.asarray(targets, np.int32)
    baseline = tf.constant(baseline, tf.float32)
    alpha_tensor = tf.constant(alphas, tf.float32)
    weight_tensor = tf.constant(weights, tf.float32)
    for start in range(0, n, step):
      stop = min(n, start + step)
      out, grad, outputs, used = self._path_fn(
          tf.constant(float_matrix[start:stop], tf.float32), baseline, alpha_tensor,
          weight_tensor, [tf.constant(o[start:stop]) for o in others],
          tf.constant(targets[start:stop]), tf.constant(x_index, tf.int32))
      outs.append(out.numpy()[:, :m])
      grads.append(grad.numpy())
      at_x.append(outputs.numpy())
      chosen.append(used.numpy())
    if not outs:
      return (np.zeros((0, m), np.float32), np.zeros_like(float_matrix),
              np.zeros((0, max(1, self.num_outputs)), np.float32), np.zeros(0, np.int32))
    return (np.concatenate(outs), np.concatenate(grads, axis=0), np.concatenate(at_x),
            np.concatenate(chosen))

  def target_gradients(self, float_matrix: np.ndarray, others: Sequence[np.ndarray],
                       targets: np.ndarray):
    """(f(x)[target], d f(x)[target] / d x_float) for every row, chunked."""
    self._compile()
    n = float_matrix.shape[0]
    outs, grads = [], []
    targets = np.asarray(targets, np.int32)
    for start in range(0, n, self.max_rows):
      stop = min(n, start + self.max_rows)
      out, grad = self._grad_fn(
          tf.constant(float_matrix[start:stop], tf.float32),
          [tf.constant(o[start:stop]) for o in others],
          tf.constant(targets[start:stop]))
      outs.append(out.numpy())
      grads.append(grad.numpy())
    if not outs:
      return np.zeros((0,), np.float32), np.zeros_like(float_matrix)
    return np.concatenate(outs), np.concatenate(grads, axis=0)


class _ConcreteCall:
  """Calls a tf.function with a full input_signature through its one concrete function.

  The tf.function would match every call's arguments against its signature
  first, which costs a millisecond or so per call: a fifth of a batch's time
  for a small model. Traced on first use.
  """

  def __init__(self, function):
    self._function = function
    self._concrete = None

  def __call__(self, *args):
    if self._concrete is None:
      self._concrete = self._function.get_concrete_function()
    return self._concrete(*args)


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


def to_model_column(values, dtype: tf.DType) -> np.ndarray:
  values = np.asarray(values).reshape(-1)
  if dtype == tf.string:
    return np.array([v if isinstance(v, bytes) else str(v).encode('utf-8') for v in values],
                    dtype=object)
  return values.astype(dtype.as_numpy_dtype)


def _output_kind_of_keras(model, num_outputs: int) -> str:
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
    super().__init__(names, dtypes, ranks, output_kind or _output_kind_of_keras(model, num_outputs),
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
