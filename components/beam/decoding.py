"""Serialized tf.Examples -> numpy columns, with errors that name the file and feature."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

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

  def decode(self, records: Sequence[bytes], files: Sequence[str], need_label: bool):
    """Returns (model features, labels or None, slice values per feature)."""
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
    flat = column.flatten().to_pylist()
    if flat and isinstance(flat[0], bytes):
      # Slicing features have few distinct values: decode each once.
      text = {v: v.decode('utf-8', 'replace') for v in set(flat)}
      flat = [text[v] for v in flat]
    if (lengths == 1).all():
      return [[v] for v in flat]
    ends = np.cumsum(lengths).tolist()
    return [flat[end - k:end] for end, k in zip(ends, lengths.tolist())]

  def _column(self, batch, name, files, dtype: Optional[str], role: str,
              length: int = 1) -> np.ndarray:
    import pyarrow as pa  # pylint: disable=g-import-not-at-top
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
    if pa.types.is_binary(values.type) or pa.types.is_string(values.type) or \
        pa.types.is_large_binary(values.type):
      if dtype is not None and dtype != 'string':
        raise InputDataError(f'Feature {name!r} ({role}) holds bytes in {files[0]}, but the '
                             f'model input is {dtype}.')
      return values.to_numpy(zero_copy_only=False)   # object array of bytes
    array = values.to_numpy(zero_copy_only=False)
    if dtype == 'string':
      raise InputDataError(f'Feature {name!r} ({role}) holds numbers in {files[0]}, but the '
                           'model input is a string.')
    if dtype in FLOAT_KINDS:
      return array.astype(np.float32)
    if dtype is not None:
      return array.astype(np.dtype(dtype))
    return array


def finite_rows(features: Dict[str, np.ndarray], float_names: Sequence[str]) -> np.ndarray:
  ok = np.ones(len(next(iter(features.values()))), bool)
  for name in float_names:
    finite = np.isfinite(features[name])
    ok &= finite.reshape(len(finite), -1).all(axis=1)
  return ok

