"""Explaining batches of examples with every configured method, once the model is loaded.

    batches of (example_index, file, record) --AttributeBatchFn-->
        main:        one Arrow table per (batch, method) of the per-example table
        'statistics': ((slice key, method), SliceStatistics) per batch and slice
        'errors':    ((method, slice name, 'absolute'|'relative'|'steps'), [values]) for quantiles
        'skipped':   rows skipped for NaN/inf values, per batch
        'seconds':   engine seconds per (batch, method)
        'tokens':    ((slice key, method), {word: [count, sum, sum of |score|]}) per batch
                     and slice, for token methods

The DoFn carries only picklable settings and loads the model in `setup`, once
per worker.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
from tfx_explain.artifacts.statistics import SliceStatistics
from tfx_explain.beam.decoding import ExampleDecoder, finite_rows
from tfx_explain.beam.feature_spec import FeatureSpec, InputDataError
from tfx_explain.beam.worker import set_tf_threads
from tfx_explain.engine.model import element_name
from tfx_explain.engine.reference import ReferenceStats
from tfx_explain.engine.text import token_totals


def slice_keys_for(slicing_specs: Sequence[Sequence[str]], slice_values: Dict[str, List[list]],
                   row: int) -> List[Tuple]:
  """Slice keys an example belongs to: one per spec and value combination."""
  keys = []
  for spec in slicing_specs:
    combos: List[Tuple] = [()]
    for feature in spec:
      values = slice_values[feature][row]
      combos = [c + ((feature, v),) for c in combos for v in sorted(set(values), key=str)]
    keys.extend(combos)
  return keys


class Progress:
  """Examples this process's workers have explained (read by `tfx-explain explain`'s bar).

  Only runners whose workers run in the calling process (the DirectRunner's
  in_memory and multi_threading modes) move it; elsewhere it stays at 0.
  """
  _lock = threading.Lock()
  explained = 0

  @classmethod
  def add(cls, examples: int) -> None:
    with cls._lock:
      cls.explained += examples

  @classmethod
  def reset(cls) -> None:
    with cls._lock:
      cls.explained = 0


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """Where the model is; how to load it (signature, head, space) is in the config."""
  path: str
  transform_graph: Optional[str] = None


def _floats(column, n: int):
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  if column is None:
    return pa.nulls(n, pa.float64())
  column = np.asarray(column, np.float64)
  return pa.array(column, mask=np.isnan(column))   # NaN (not attributed) -> null


class AttributeBatchFn(beam.DoFn):
  """Explains a batch of examples with every configured method."""

  STATISTICS = 'statistics'
  ERRORS = 'errors'
  SKIPPED = 'skipped'
  SECONDS = 'seconds'
  TOKENS = 'tokens'
  OUTPUTS = (STATISTICS, ERRORS, SKIPPED, SECONDS, TOKENS)

  def __init__(self, model: ModelSettings, config_json: str, spec: FeatureSpec,
               slicing_specs: Sequence[Sequence[str]], row_schema,
               maps_dir: Optional[str] = None):
    self._model_settings = model
    self._config_json = config_json
    self._spec = spec
    self._slicing_specs = [list(s) for s in slicing_specs]
    self._row_schema = row_schema
    self._maps_dir = maps_dir
    self._model = None
    self._config = None
    self._decoder = None
    self._groups: List[List[int]] = []

  def setup(self):
    from tfx_explain.config import AttributionConfig  # pylint: disable=g-import-not-at-top
    self._config = AttributionConfig.from_json(self._config_json)
    set_tf_threads(self._config.tf_threads_per_worker)   # before this process runs TensorFlow
    self._model = self._config.load_model(self._model_settings.path,
                                          self._model_settings.transform_graph, shared=True)
    self._decoder = ExampleDecoder(self._spec)
    self._groups = self._group_columns(self._spec)

  @staticmethod
  def _group_columns(spec: FeatureSpec) -> List[List[int]]:
    """Each vector feature's element columns in the table, in spec order."""
    if spec.image_shape or not spec.vectors:
      return []
    position = {name: i for i, name in enumerate(spec.model_inputs)}
    return [[position[element_name(name, i)] for i in range(size)] for name, size in spec.vectors]

  def _decode_finite(self, batch, need_label: bool):
    """Decoded features, labels, slice values and indices of the batch's usable rows."""
    records = [r for _, _, r in batch]
    files = [f for _, f, _ in batch]
    indices = np.asarray([i for i, _, _ in batch], np.int64)
    features, labels, slice_values = self._decoder.decode(records, files, need_label)
    keep = finite_rows(features, self._spec.float_inputs)
    if labels is not None and labels.dtype.kind == 'f':
      keep &= np.isfinite(labels)
    skipped = int((~keep).sum())
    if skipped:
      rows = np.nonzero(keep)[0]
      features = {k: v[rows] for k, v in features.items()}
      labels = labels[rows] if labels is not None else None
      slice_values = {k: [v[i] for i in rows] for k, v in slice_values.items()}
      indices = indices[rows]
    return features, labels, slice_values, indices, skipped

  def process(self, batch, reference: Optional[ReferenceStats]):
    if reference is None and not self._spec.image_shape:
      raise InputDataError('The reference split has no usable examples (empty, or every row '
                           'has NaN/inf values); baselines and the background need it.')
    methods = self._config.methods
    need_label = any(m.requires_labels for m in methods)
    features, labels, slice_values, indices, skipped = self._decode_finite(batch, need_label)
    Progress.add(len(batch))
    if skipped:
      yield beam.pvalue.TaggedOutput(self.SKIPPED, skipped)
    if not len(indices):
      return
    slice_keys = [slice_keys_for(self._slicing_specs, slice_values, i)
                  for i in range(len(indices))]
    outputs = None
    if any(m.uses_outputs for m in methods):
      # One forward pass for every method that needs f(x).
      started = time.perf_counter()
      outputs = self._model.predict(features)
      yield beam.pvalue.TaggedOutput(self.SECONDS, time.perf_counter() - started)
    for method in methods:
      started = time.perf_counter()
      result = method.attribute(self._model, features, reference, self._config.target,
                                labels if method.requires_labels else None, indices,
                                outputs if method.uses_outputs else None)
      yield beam.pvalue.TaggedOutput(self.SECONDS, time.perf_counter() - started)
      if self._spec.image_shape:
        yield from self._emit_image(result, indices, slice_keys)
      else:
        yield from self._emit(result, indices, slice_keys)

  def _emit_image(self, result, indices, slice_keys):
    """Image models: maps go to compressed float16 shards, region totals to the table."""
    shard = tables.map_shard_name(result.method, indices[0])
    tables.write_maps(os.path.join(self._maps_dir, shard), indices, result.maps)
    yield from self._emit(result, indices, slice_keys, {'map_file': shard}, result.display)

  def _emit(self, result, indices, slice_keys, maps=None, display=None):
    """Per-example rows, completeness errors and per-slice statistics of one result."""
    import pyarrow as pa  # pylint: disable=g-import-not-at-top
    error = result.completeness_error
    relative = None
    if error is not None:
      gap = np.abs(result.prediction - result.baseline_prediction)
      relative = error / np.maximum(gap, 1e-6)
    # The batch's rows as one Arrow table: one Beam element per batch and
    # method, not per example, and no per-value Python work.
    n = len(indices)
    values = np.asarray(result.attributions, np.float64)
    columns = {
        'example_index': pa.array(np.asarray(indices, np.int64)),
        'method': pa.array([result.method] * n, pa.string()),
        'target': pa.array(np.asarray(result.target, np.int64)),
        'output_kind': pa.array([result.output_kind] * n, pa.string()),
        'value_kind': pa.array([result.value_kind] * n, pa.string()),
        'prediction': _floats(result.prediction, n),
        'baseline_prediction': _floats(result.baseline_prediction, n),
        'completeness_error': _floats(error, n),
        'relative_completeness_error': _floats(relative, n),
        'steps': (pa.nulls(n, pa.int64()) if result.steps is None else
                  pa.array(np.asarray(result.steps, np.int64))),
        tables.SLICES_COLUMN: pa.array([[layout.slice_name(key) for key in keys if key]
                                        for keys in slice_keys], pa.list_(pa.string())),
    }
    for j, name in enumerate(result.feature_names):
      columns[name] = _floats(values[:, j], n)
    standard_errors = result.standard_errors
    if self._row_schema.get_field_index(tables.standard_error_column(
        result.feature_names[0])) >= 0:
      for j, name in enumerate(result.feature_names):
        columns[tables.standard_error_column(name)] = _floats(
            None if standard_errors is None else standard_errors[:, j], n)
    if maps:
      columns['map_file'] = pa.array([maps['map_file']] * n, pa.string())
      columns['map_row'] = pa.array(np.arange(n, dtype=np.int64))
    words = getattr(result, 'tokens', None)
    if self._row_schema.get_field_index(tables.TOKENS_COLUMN) >= 0:
      columns[tables.TOKENS_COLUMN] = pa.array(words, pa.list_(pa.string())) \
          if words is not None else pa.nulls(n, pa.list_(pa.string()))
      columns[tables.TOKEN_SCORES_COLUMN] = pa.array(
          [np.asarray(s, np.float64) for s in result.token_scores],
          pa.list_(pa.float64())) if words is not None else pa.nulls(n, pa.list_(pa.float64()))
    yield pa.Table.from_pydict(columns, schema=self._row_schema)
    members_of: Dict[Tuple, List[int]] = {}   # slice key -> rows of this batch in it
    for i, keys in enumerate(slice_keys):
      for key in keys:
        members_of.setdefault(key, []).append(i)
    for key, members in members_of.items():
      if error is not None:
        label = layout.slice_name(key)
        yield beam.pvalue.TaggedOutput(
            self.ERRORS, ((result.method, label, 'absolute'), error[members].tolist()))
        yield beam.pvalue.TaggedOutput(
            self.ERRORS, ((result.method, label, 'relative'), relative[members].tolist()))
      if result.steps is not None and not key:
        yield beam.pvalue.TaggedOutput(
            self.ERRORS, ((result.method, layout.slice_name(key), 'steps'),
                          np.asarray(result.steps, np.float64)[members].tolist()))
      stats = SliceStatistics.of_rows(
          values[members], result.prediction[members],
          error[members] if error is not None else None,
          relative[members] if relative is not None else None, self._groups,
          display[members] if display is not None else None,
          standard_errors[members] if standard_errors is not None else None,
          result.steps[members] if result.steps is not None else None)
      yield beam.pvalue.TaggedOutput(self.STATISTICS, ((key, result.method), stats))
      if words is not None:
        yield beam.pvalue.TaggedOutput(self.TOKENS, ((key, result.method), token_totals(
            [words[i] for i in members], [result.token_scores[i] for i in members])))


def concat_tables(tables_of_a_group):
  """Arrow tables of one schema as one (a Parquet row group when written batched)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  return pa.concat_tables(list(tables_of_a_group))
