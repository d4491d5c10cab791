"""Serialized tf.Examples -> numpy columns, with errors that name the file and feature."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfx_explain.beam.feature_spec import FLOAT_KINDS, FeatureSpec, InputDataError
from tfx_explain.engine.model import element_name


class ExampleDecoder:
  """Serialized tf.Examples -> numpy columns, with errors that name the culprit."""

  def __init__(self, spec: FeatureSpec):
    from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
    self._spec = spec
    self._decoder = example_coder.ExamplesToRecordBatchDecoder(spec.serialized_schema)
    # Each vector feature's elements, which are decoded with their feature, not alone.
    self._elements = {name: [element_name(name, i) for i in range(size)]
                      for name, size in spec.vectors}
    self._in_vectors = {e for elements in self._elements.values() for e in elements}
    # With a schema every feature's type is known up front, so tf.io.parse_example
    # can decode a batch (several times faster than DecodeBatch plus our per-column
    # checks). Anything it rejects goes through the checked path, which names
    # the culprit.
    self._schema_types = _schema_types(spec.serialized_schema)
    self._parsers: Dict[bool, Optional[_Parser]] = {}

  def decode(self, records: Sequence[bytes], files: Sequence[str], need_label: bool):
    """Returns (model features, labels or None, slice values per feature)."""
    if records and self._schema_types is not None:
      if need_label not in self._parsers:
        self._parsers[need_label] = _Parser.of(self._spec, self._elements, self._schema_types,
                                               need_label)
      parser = self._parsers[need_label]
      if parser is not None:
        decoded = self._decode_parsed(parser, records, files, need_label)
        if decoded is not None:
          return decoded
    return self._decode_checked(records, files, need_label)

  def _decode_parsed(self, parser: '_Parser', records, files, need_label: bool):
    """decode() through tf.io.parse_example; None when the checked path must decide."""
    raw = parser(records)
    if raw is None:
      return None
    try:
      features = {}
      for name, elements in self._elements.items():
        column = _typed(raw[name], name, files, self._spec.dtype_of(elements[0]), 'model input')
        for i, element in enumerate(elements):
          features[element] = column[:, i]
      for name, dtype in zip(self._spec.model_inputs, self._spec.input_dtypes):
        if name in self._in_vectors:
          continue
        role = 'image input' if self._spec.image_shape else 'model input'
        column = _typed(raw[name], name, files, dtype, role)
        if self._spec.image_shape:
          column = column.reshape((-1,) + tuple(self._spec.image_shape))
        features[name] = column
    except InputDataError:
      return None
    labels = raw[self._spec.label_key] if need_label and self._spec.label_key else None
    slices = {}
    for name in self._spec.slice_features:
      values = raw[name]
      if isinstance(values, tuple):   # (flat values, values per example)
        slices[name] = _lists(values[0].tolist(), values[1])
      else:
        slices[name] = _lists(values.reshape(-1).tolist(),
                              np.full(len(values), values[0].size if values.ndim > 1 else 1))
    return features, labels, slices

  def _decode_checked(self, records: Sequence[bytes], files: Sequence[str], need_label: bool):
    batch = self._decoder.DecodeBatch(list(records))
    features = {}
    for name, elements in self._elements.items():
      size = len(elements)
      column = self._column(batch, name, files, self._spec.dtype_of(elements[0]), 'model input',
                            size).reshape(-1, size)
      for i, element in enumerate(elements):
        features[element] = column[:, i]
    for name, dtype in zip(self._spec.model_inputs, self._spec.input_dtypes):
      if name in self._in_vectors:
        continue
      if self._spec.image_shape:
        size = int(np.prod(self._spec.image_shape))
        column = self._column(batch, name, files, dtype, 'image input', size)
        features[name] = column.reshape((-1,) + tuple(self._spec.image_shape))
      else:
        features[name] = self._column(batch, name, files, dtype, 'model input')
    labels = None
    if need_label and self._spec.label_key:
      labels = self._column(batch, self._spec.label_key, files, None, 'label')
    slices = {name: self._values(batch, name) for name in self._spec.slice_features}
    return features, labels, slices

  @staticmethod
  def _values(batch, name):
    """Per-example python lists (empty when missing), for slicing."""
    index = batch.schema.get_field_index(name)
    if index < 0:
      return [[] for _ in range(batch.num_rows)]
    column = batch.column(index)
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    return _lists(column.flatten().to_pylist(), lengths)

  def _column(self, batch, name, files, dtype: Optional[str], role: str,
              length: int = 1) -> np.ndarray:
    index = batch.schema.get_field_index(name)
    if index < 0:
      raise InputDataError(
          f'Feature {name!r} ({role}) is missing from the examples in {sorted(set(files))[0]}'
          f'{" (and others)" if len(set(files)) > 1 else ""}.')
    column = batch.column(index)
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    bad = np.nonzero(lengths != length)[0]
    if len(bad):
      i = int(bad[0])
      what = 'has no value' if lengths[i] == 0 else f'has {lengths[i]} values'
      needed = 'exactly one value' if length == 1 else f'{length} values'
      low, high = int(lengths.min()), int(lengths.max())
      if low != high and high > 1:
        why = (f' Its examples hold from {low} to {high} values: a variable-length feature has '
               'no fixed set of values to attribute to. Give the model a fixed-length input '
               "(SchemaGen's infer_feature_shape, padding in Transform) or leave it out.")
      elif low == high:
        why = (f' Every example holds {low}: the model input takes {length}, so the model was '
               'trained on other examples than these.')
      else:
        why = ' Fill missing values (Transform, or at the source) or drop those examples.'
      raise InputDataError(f'Feature {name!r} ({role}) {what} in an example of {files[i]}; '
                           f'each example needs {needed}.{why}')
    values = column.flatten()
    # Object array of bytes, or numbers.
    return _typed(values.to_numpy(zero_copy_only=False), name, files, dtype, role)


def _typed(array: np.ndarray, name: str, files, dtype: Optional[str], role: str) -> np.ndarray:
  """Decoded values as the model input's dtype (as they are when dtype is None)."""
  if array.dtype == object:   # bytes
    if dtype is not None and dtype != 'string':
      raise InputDataError(f'Feature {name!r} ({role}) holds bytes in {files[0]}, but the '
                           f'model input is {dtype}.')
    return array
  if dtype == 'string':
    raise InputDataError(f'Feature {name!r} ({role}) holds numbers in {files[0]}, but the '
                         'model input is a string.')
  if dtype in FLOAT_KINDS:
    return array.astype(np.float32)
  if dtype is not None:
    return array.astype(np.dtype(dtype))
  return array


def _lists(flat: list, lengths: np.ndarray) -> List[list]:
  """Per-example lists of slicing values out of the flat values; bytes as text."""
  if flat and isinstance(flat[0], bytes):
    # Slicing features have few distinct values: decode each once.
    text = {v: v.decode('utf-8', 'replace') for v in set(flat)}
    flat = [text[v] for v in flat]
  if (lengths == 1).all():
    return [[v] for v in flat]
  ends = np.cumsum(lengths).tolist()
  return [flat[end - k:end] for end, k in zip(ends, np.asarray(lengths).tolist())]


def _schema_types(serialized_schema: Optional[bytes]):
  """Feature name -> tf dtype name of every plain feature of the schema; None without one."""
  if serialized_schema is None:
    return None
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  schema = schema_pb2.Schema.FromString(serialized_schema)
  names = {schema_pb2.FLOAT: 'float32', schema_pb2.INT: 'int64', schema_pb2.BYTES: 'string'}
  return {f.name: names[f.type] for f in schema.feature if f.type in names}


class _Parser:
  """One compiled tf.io.parse_example over a batch of serialized examples.

  Model inputs and the label must hold exactly their number of values, of the
  schema's type; a batch where one does not fails to parse and the caller
  decodes it the checked way. Slicing features may hold any number.
  """

  def __init__(self, fixed: Dict[str, Tuple[Tuple[int, ...], str]], ragged: Dict[str, str]):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    features = {name: tf.io.FixedLenFeature(shape, dtype) for name, (shape, dtype)
                in fixed.items()}
    features.update({name: tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64)
                     for name, dtype in ragged.items()})

    def parse(serialized):
      parsed = tf.io.parse_example(serialized, features)
      return {name: (value.values, value.row_lengths()) if name in ragged else value
              for name, value in parsed.items()}

    self._errors = (tf.errors.InvalidArgumentError,)
    self._constant = tf.constant
    self._parse = tf.function(parse, input_signature=[tf.TensorSpec([None], tf.string)],
                              autograph=False).get_concrete_function()

  @classmethod
  def of(cls, spec: FeatureSpec, elements: Dict[str, List[str]], types: Dict[str, str],
         need_label: bool) -> Optional['_Parser']:
    """The parser of what decode() returns, or None when the schema does not type it all."""
    fixed: Dict[str, Tuple[Tuple[int, ...], str]] = {}

    def want(name, shape) -> bool:
      if name not in types or fixed.get(name, (shape,))[0] != shape:
        return False
      fixed[name] = (shape, types[name])
      return True

    in_vectors = {e for names in elements.values() for e in names}
    for name, names in elements.items():
      if not want(name, (len(names),)):
        return None
    for name in spec.model_inputs:
      if name in in_vectors:
        continue
      shape = (int(np.prod(spec.image_shape)),) if spec.image_shape else ()
      if not want(name, shape):
        return None
    if need_label and spec.label_key and not want(spec.label_key, ()):
      return None
    if any(name not in types for name in spec.slice_features):
      return None
    ragged = {name: types[name] for name in spec.slice_features if name not in fixed}
    return cls(fixed, ragged)

  def __call__(self, records) -> Optional[Dict[str, object]]:
    """Numpy values by feature ((flat values, lengths) for slicing features); None on failure."""
    try:
      parsed = self._parse(self._constant(list(records)))
    except self._errors:
      return None
    return {name: tuple(v.numpy() for v in value) if isinstance(value, tuple) else value.numpy()
            for name, value in parsed.items()}


def finite_rows(features: Dict[str, np.ndarray], float_names: Sequence[str]) -> np.ndarray:
  ok = np.ones(len(next(iter(features.values()))), bool)
  for name in float_names:
    finite = np.isfinite(features[name])
    ok &= finite.reshape(len(finite), -1).all(axis=1)
  return ok

