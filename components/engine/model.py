"""The model contract: one differentiable, batched view of a model for every method.

A method never touches Keras or SavedModel APIs directly. It sees a
`ModelFunction`: named scalar inputs (one value per example), a batched
`predict`, and `target_gradients` / `path_gradients` with respect to the
float inputs, compiled once with `tf.function` and chunked so memory stays
bounded. The compiled functions take the float inputs as one dense tensor of
"points", [N, *point_shape]: a tabular model's float features side by side,
or whole images for an image model (`image_model.ImageModel`), so every
modality shares them. Adapters for Keras models, signatures and Python
functions are in `adapters.py`; saved calls behind a Transform in `restored.py`.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

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

  # -- what the compiled functions are built from ----------------------------
  @property
  def point_shape(self) -> Tuple[int, ...]:
    """Per-example shape of the float points gradients are taken with respect to."""
    return (len(self.float_features),)

  def _other_specs(self) -> List[tf.TensorSpec]:
    return [tf.TensorSpec([None], self.input_dtypes[n]) for n in self.other_features]

  def _forward(self, points: tf.Tensor, others: Sequence[tf.Tensor]) -> tf.Tensor:
    """Outputs [batch, K] float32 for points [batch, *point_shape] and the other columns."""
    return self.outputs_of(self._assemble(points, others))

  def outputs_of(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Outputs [batch, K] float32 for the model's own inputs (keyed by `model_inputs`)."""
    return self._outputs_2d(self._call(inputs))

  def _assemble(self, float_matrix, others):
    # One unstack rather than a slice per feature: the gradient of F slices is F
    # full-size padded tensors summed (O(F^2) per row), that of an unstack one stack.
    columns = tf.unstack(float_matrix, num=len(self.float_features), axis=1) \
        if self.float_features else []
    by_feature = dict(zip(self.float_features, columns))
    by_feature.update(zip(self.other_features, others))
    return self._model_inputs_from(by_feature)

  def inputs_from_columns(self, by_feature: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Per-feature [batch] columns -> the model's inputs (vectors reassembled)."""
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
    shape = list(self.point_shape)
    point_spec = tf.TensorSpec([None] + shape, tf.float32)
    other_specs = self._other_specs()
    # Broadcasts alphas [m] against points [n, m, *point_shape].
    alpha_shape = [1, -1] + [1] * len(shape)

    @tf.function(input_signature=[point_spec, other_specs], reduce_retracing=True,
                 autograph=self.autograph)
    def predict_fn(points, others):
      return self._forward(points, others)

    @tf.function(input_signature=[point_spec, other_specs, tf.TensorSpec([None], tf.int32)],
                 reduce_retracing=True, autograph=self.autograph)
    def grad_fn(points, others, targets):
      with tf.GradientTape() as tape:
        tape.watch(points)
        outputs = self._forward(points, others)
        selected = tf.gather(outputs, targets, axis=1, batch_dims=1)
        # Rows are independent, so d(sum)/d(row) is each row's own gradient.
        total = tf.reduce_sum(selected)
      grads = tape.gradient(total, points)
      if grads is None:
        grads = tf.zeros_like(points)
      return selected, grads

    @tf.function(input_signature=[
        point_spec, point_spec, tf.TensorSpec([None], tf.float32),
        tf.TensorSpec([None], tf.float32), other_specs, tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([], tf.int32)], reduce_retracing=True, autograph=self.autograph)
    def path_fn(x, baselines, alphas, weights, others, targets, x_index):
      # Every interpolation point of every example in one batch: row (i, k)
      # is baselines[i] + alphas[k] * (x[i] - baselines[i]). Point x_index is x
      # itself, so the same pass gives the prediction, and the predicted class
      # where targets[i] < 0.
      n, m = tf.shape(x)[0], tf.shape(alphas)[0]
      a = tf.reshape(alphas, alpha_shape)
      points = tf.reshape(baselines[:, None] + a * (x - baselines)[:, None], [-1] + shape)
      repeated = [tf.repeat(o, m) for o in others]
      with tf.GradientTape() as tape:
        tape.watch(points)
        outputs = self._forward(points, repeated)
        outputs = tf.reshape(outputs, [n, m, tf.shape(outputs)[-1]])
        at_x = outputs[:, x_index, :]
        chosen = tf.where(targets < 0, tf.argmax(at_x, axis=1, output_type=tf.int32), targets)
        selected = tf.gather(outputs, chosen, axis=2, batch_dims=1)
        total = tf.reduce_sum(selected)
      grads = tape.gradient(total, points)
      if grads is None:
        grads = tf.zeros_like(points)
      grads = tf.reshape(grads, [n, m] + shape)
      mean_grads = tf.reduce_sum(grads * tf.reshape(weights, alpha_shape), axis=1)
      return selected, mean_grads, at_x, chosen

    @tf.function(input_signature=[
        point_spec, [tf.TensorSpec([None], tf.int32) for _ in other_specs], other_specs],
        reduce_retracing=True, autograph=self.autograph)
    def predict_coded_fn(points, codes, tables):
      # Each other input as codes into its distinct values, expanded here: one
      # gather per input inside the graph rather than an eager op per chunk.
      return self._forward(points, [tf.gather(t, c) for t, c in zip(tables, codes)])

    self._predict_fn = ConcreteCall(predict_fn)
    self._predict_coded_fn = ConcreteCall(predict_coded_fn)
    self._grad_fn = ConcreteCall(grad_fn)
    self._path_fn = ConcreteCall(path_fn)

  def row_chunks(self, n: int, rows_per_example: int = 1):
    """Slices of N examples that keep each model call within max_rows rows."""
    step = max(1, self.max_rows // max(1, rows_per_example))
    for start in range(0, n, step):
      yield slice(start, min(n, start + step))

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
    """Outputs [N, K] for a split batch (points [N, *point_shape]); chunked by max_rows.

    Other (non-float) columns may be numpy arrays or tensors already.
    """
    self._compile()
    n = float_matrix.shape[0]
    chunks = []
    for rows in self.row_chunks(n):
      whole = rows.start == 0 and rows.stop == n   # slicing a string tensor copies every string
      chunks.append(self._predict_fn(
          tf.constant(float_matrix[rows], tf.float32),
          [tf.convert_to_tensor(o if whole else o[rows]) for o in others]).numpy())
    if not chunks:
      return np.zeros((0, self.num_outputs), np.float32)
    return np.concatenate(chunks, axis=0)

  def predict_coded(self, float_matrix: np.ndarray, codes: Sequence[np.ndarray],
                    tables: Sequence[tf.Tensor]) -> np.ndarray:
    """predict_split with each other column given as int32 codes into a table of its values."""
    self._compile()
    chunks = [self._predict_coded_fn(tf.constant(float_matrix[rows], tf.float32),
                                     [tf.constant(c[rows], tf.int32) for c in codes], list(tables)
                                     ).numpy()
              for rows in self.row_chunks(float_matrix.shape[0])]
    if not chunks:
      return np.zeros((0, self.num_outputs), np.float32)
    return np.concatenate(chunks, axis=0)

  def predict(self, features: Features) -> np.ndarray:
    matrix, others = self.split(features)
    return self.predict_split(matrix, others)

  def path_gradients(self, float_matrix: np.ndarray, baseline: np.ndarray, alphas: np.ndarray,
                     weights: np.ndarray, others: Sequence[np.ndarray], targets: np.ndarray):
    """Integrated-gradient path sums for every example, and the outputs at x, in one pass.

    baseline: one for all examples [*point_shape], or one each [N, *point_shape].
    targets[i] < 0 explains example i's predicted (argmax) class.
    Returns (outputs along the path [N, m] for the explained class,
    sum_k weights_k * grad at point k [N, *point_shape], all outputs at x [N, K],
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
    baselines = np.broadcast_to(np.asarray(baseline, np.float32), float_matrix.shape)
    outs, grads, at_x, chosen = [], [], [], []
    targets = np.asarray(targets, np.int32)
    alpha_tensor = tf.constant(alphas, tf.float32)
    weight_tensor = tf.constant(weights, tf.float32)
    for rows in self.row_chunks(n, len(alphas)):
      out, grad, outputs, used = self._path_fn(
          tf.constant(float_matrix[rows], tf.float32), tf.constant(baselines[rows]),
          alpha_tensor, weight_tensor, [tf.constant(o[rows]) for o in others],
          tf.constant(targets[rows]), tf.constant(x_index, tf.int32))
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
    """(f(x)[target], d f(x)[target] / d points) for every row, chunked."""
    self._compile()
    outs, grads = [], []
    targets = np.asarray(targets, np.int32)
    for rows in self.row_chunks(float_matrix.shape[0]):
      out, grad = self._grad_fn(
          tf.constant(float_matrix[rows], tf.float32), [tf.constant(o[rows]) for o in others],
          tf.constant(targets[rows]))
      outs.append(out.numpy())
      grads.append(grad.numpy())
    if not outs:
      return np.zeros((0,), np.float32), np.zeros_like(float_matrix)
    return np.concatenate(outs), np.concatenate(grads, axis=0)


class ConcreteCall:
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


def to_model_column(values, dtype: tf.DType) -> np.ndarray:
  values = np.asarray(values).reshape(-1)
  if dtype == tf.string:
    return np.array([v if isinstance(v, bytes) else str(v).encode('utf-8') for v in values],
                    dtype=object)
  return values.astype(dtype.as_numpy_dtype)
