"""Beam transforms that stream tf.Examples through the explanation engine.

    files --ReadIndexedExamples--> batches of (example_index, file, record)
          --ComputeReferenceStats--> ReferenceStats (singleton side input)
          --AttributeBatchFn--> per-example rows + per-slice partials

Nothing holds a split in memory: records are read file by file, explained in
batches, and reduced with combiners. DoFns only carry picklable settings and
load the model in `setup`, once per worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import google_crc32c
import numpy as np

from tfx_explain.artifact_io import slice_name
from tfx_explain.engine.model import element_name
from tfx_explain.engine.reference import ReferenceStats

FLOAT_KINDS = ('float16', 'float32', 'float64', 'bfloat16')


class InputDataError(ValueError):
  """Examples do not fit the model or schema; the message names file and feature."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """What to decode from each example, picklable for workers."""
  model_inputs: Tuple[str, ...]
  input_dtypes: Tuple[str, ...]          # tf dtype names, parallel to model_inputs
  label_key: Optional[str] = None
  slice_features: Tuple[str, ...] = ()
  serialized_schema: Optional[bytes] = None
  # (height, width, channels) when the model takes one image input.
  image_shape: Tuple[int, ...] = ()
  # (feature, D) for each vector feature: decoded whole, attributed as `x[0]`...`x[D-1]`.
  vectors: Tuple[Tuple[str, int], ...] = ()

  @property
  def float_inputs(self) -> List[str]:
    return [n for n, d in zip(self.model_inputs, self.input_dtypes) if d in FLOAT_KINDS]

  def dtype_of(self, name: str) -> str:
    return self.input_dtypes[self.model_inputs.index(name)]


# -- reading ------------------------------------------------------------------

def _compression(path: str) -> str:
  return 'GZIP' if path.endswith('.gz') else ''


def _masked_crc(data) -> int:
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


_READ_BLOCK = 1 << 20   # decompressed bytes parsed per read


def _records(path: str, check_data: bool = True) -> Iterable[bytes]:
  """TFRecords of a file, checking framing and CRCs (data CRCs unless check_data=False).

  Our own reader rather than tf.data: a truncated gzip stream can end
  tf.data's iteration silently, and a run must never explain half a file.
  Records are parsed out of large decompressed blocks, not read one by one:
  per-read Python overhead would otherwise cost more than decoding.
  """
  import gzip  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def fail(reason):
    return InputDataError(f'Cannot read TFRecord file {path}: it is corrupt or truncated '
                          f'({reason}).')

  unpack_length, unpack_crc = struct.Struct('<Q').unpack_from, struct.Struct('<I').unpack_from
  with tf.io.gfile.GFile(path, 'rb') as raw:
    stream = gzip.GzipFile(fileobj=raw) if _compression(path) == 'GZIP' else raw
    buffer, pos, number = b'', 0, 0

    def fill(needed):
      """Makes at least `needed` bytes available from pos; False at end of file."""
      nonlocal buffer, pos
      parts, available = [buffer[pos:]], len(buffer) - pos
      while available < needed:
        chunk = stream.read(max(_READ_BLOCK, needed - available))
        if not chunk:
          break
        parts.append(chunk)
        available += len(chunk)
      buffer, pos = b''.join(parts), 0
      return available >= needed

    try:
      while True:
        if len(buffer) - pos < 12 and not fill(12):
          if len(buffer) == pos:
            return
          raise fail(f'record {number} header cut short')
        (length,) = unpack_length(buffer, pos)
        if unpack_crc(buffer, pos + 8)[0] != _masked_crc(buffer[pos:pos + 8]):
          raise fail(f'record {number} length checksum mismatch')
        if len(buffer) - pos < 16 + length and not fill(16 + length):
          raise fail(f'record {number} cut short')
        start = pos + 12
        data = buffer[start:start + length]
        if check_data and unpack_crc(buffer, start + length)[0] != _masked_crc(data):
          raise fail(f'record {number} data checksum mismatch')
        pos = start + length + 4
        number += 1
        yield data
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
      raise fail(f'{type(e).__name__}: {e}') from e


def first_records(files: Sequence[str], limit: int) -> Tuple[List[bytes], List[str]]:
  """Up to `limit` serialized records from the start of the files, and the file of each."""
  records, sources = [], []
  for path in files:
    for record in _records(path):
      records.append(record)
      sources.append(path)
      if len(records) >= limit:
        return records, sources
  return records, sources


def count_records(path: str) -> Tuple[str, int]:
  # Framing only: the reading pass checks every record's data.
  return path, sum(1 for _ in _records(path, check_data=False))


def _offsets(counts: List[Tuple[str, int]]) -> Dict[str, int]:
  offsets, total = {}, 0
  for path, count in sorted(counts):
    offsets[path] = total
    total += count
  return offsets


def _read_indexed(path: str, offsets: Dict[str, int], limit: Optional[int], batch_size: int):
  """Lists of up to batch_size (example_index, path, record) from one file."""
  start = offsets[path]
  batch = []
  for i, record in enumerate(_records(path)):
    index = start + i
    if limit is not None and index >= limit:
      break
    batch.append((index, path, record))
    if len(batch) == batch_size:
      yield batch
      batch = []
  if batch:
    yield batch


class ReadIndexedExamples(beam.PTransform):
  """Reads TFRecord files into batches: lists of (example_index, file, record).

  example_index is the record's position in the split, files in sorted order,
  so it is stable across runners and can be joined back to the examples.
  Files are counted first (cheap next to explaining) to know each offset.
  Batches are cut while reading (never across files): one Beam element per
  batch rather than per example, whose handling would cost more than decoding.
  """

  def __init__(self, files: Sequence[str], max_examples: Optional[int] = None,
               batch_size: int = 512):
    super().__init__()
    self._files = sorted(files)
    self._max_examples = max_examples
    self._batch_size = batch_size

  def expand(self, pipeline):
    files = pipeline | 'Files' >> beam.Create(self._files)
    offsets = (files
               | 'Count' >> beam.Map(count_records)
               | 'AllCounts' >> beam.combiners.ToList()
               | 'Offsets' >> beam.Map(_offsets))
    return (files
            | 'SpreadFiles' >> beam.Reshuffle()
            | 'Read' >> beam.FlatMap(_read_indexed, beam.pvalue.AsSingleton(offsets),
                                     self._max_examples, self._batch_size))


# -- decoding -----------------------------------------------------------------

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


# -- reference statistics -----------------------------------------------------

def _sample_key(record: bytes, seed: int) -> int:
  digest = hashlib.blake2b(record, digest_size=8, key=seed.to_bytes(8, 'little')).digest()
  return int.from_bytes(digest, 'little')


# Every finite float64 is an integer multiple of 2**-1126 once its 53-bit
# mantissa is an integer (frexp exponents reach down to -1073).
_EXACT_UNIT_BITS = 1126


def exact_sum(values: np.ndarray) -> int:
  """The exact sum of finite float64 values, as an integer count of 2**-1126.

  Integer sums do not depend on order or grouping, so batching and runners
  cannot change the result. Vectorised: values are grouped by exponent and
  their mantissas summed in two 26-bit halves (exact in int64).
  """
  values = np.asarray(values, np.float64).reshape(-1)
  if not len(values):
    return 0
  fractions, exponents = np.frexp(values)
  mantissas = (fractions * 2.0 ** 53).astype(np.int64)
  shifts, group = np.unique(exponents.astype(np.int64) - 53 + _EXACT_UNIT_BITS,
                            return_inverse=True)
  high = np.zeros(len(shifts), np.int64)
  low = np.zeros(len(shifts), np.int64)
  np.add.at(high, group, mantissas >> 26)
  np.add.at(low, group, mantissas & ((1 << 26) - 1))
  return sum(((int(h) << 26) + int(l)) << int(shift)
             for h, l, shift in zip(high, low, shifts))


def exact_sum_to_float(total: int) -> float:
  """An exact_sum correctly rounded to a float."""
  return total / (1 << _EXACT_UNIT_BITS)   # int / int is correctly rounded


class ReferenceStatsCombineFn(beam.CombineFn):
  """Exact mean/std, exact category counts, and a hash-ordered row sample.

  The sample keeps the rows with the smallest keyed hashes, so it is the same
  for any batching or runner; medians come from it (exact up to sample_size
  rows) and the background is its first background_size rows. It is held as
  columns (keys and one array per feature): accumulators cross process and
  stage boundaries, and a row of numpy scalars would be pickled value by value.
  """

  def __init__(self, spec: FeatureSpec, background_size: int, sample_size: int = 10000,
               max_categories: int = 1000):
    self._spec = spec
    self._background_size = background_size
    self._sample_size = max(sample_size, background_size)
    self._max_categories = max_categories

  def create_accumulator(self):
    return {'count': 0, 'sum': {}, 'sumsq': {}, 'categories': {},
            'sample_keys': np.zeros(0, np.uint64), 'sample': {}}

  def add_input(self, acc, batch):
    features, keys = batch
    n = len(keys)
    acc['count'] += n
    for name in self._spec.model_inputs:
      column = features[name]
      if name in self._spec.float_inputs:
        values = column.astype(np.float64)
        acc['sum'][name] = acc['sum'].get(name, 0) + exact_sum(values)
        acc['sumsq'][name] = acc['sumsq'].get(name, 0) + exact_sum(values * values)
      else:
        counts = acc['categories'].setdefault(name, {})
        for v in column.tolist():
          counts[v] = counts.get(v, 0) + 1
    self._add_sample(acc, keys, {name: features[name] for name in self._spec.model_inputs})
    return acc

  def _add_sample(self, acc, keys, columns):
    """Keeps the sample_size rows with the smallest keys (ties: the earlier row)."""
    if acc['sample']:
      keys = np.concatenate([acc['sample_keys'], keys])
      columns = {name: np.concatenate([acc['sample'][name], values])
                 for name, values in columns.items()}
    order = np.argsort(keys, kind='stable')[:self._sample_size]
    acc['sample_keys'] = keys[order]
    acc['sample'] = {name: values[order] for name, values in columns.items()}

  def merge_accumulators(self, accumulators):
    accumulators = list(accumulators)
    merged = self.create_accumulator()
    for acc in accumulators:
      merged['count'] += acc['count']
      for key in ('sum', 'sumsq'):
        for name, total in acc[key].items():
          merged[key][name] = merged[key].get(name, 0) + total
      for name, counts in acc['categories'].items():
        target = merged['categories'].setdefault(name, {})
        for v, c in counts.items():
          target[v] = target.get(v, 0) + c
      if acc['sample']:
        self._add_sample(merged, acc['sample_keys'], acc['sample'])
    return merged

  def extract_output(self, acc):
    count = acc['count']
    if count == 0:
      return None
    sample = acc['sample']
    mean, std, median, mode = {}, {}, {}, {}
    for name in self._spec.model_inputs:
      if name in self._spec.float_inputs:
        total = exact_sum_to_float(acc['sum'][name])
        mean[name] = total / count
        variance = max(0.0, exact_sum_to_float(acc['sumsq'][name]) / count - mean[name] ** 2)
        std[name] = math.sqrt(variance)
        median[name] = float(np.median(sample[name].astype(np.float64)))
        mode[name] = median[name]
      else:
        counts = acc['categories'][name]
        best = max(counts.values())
        mode[name] = min(v for v, c in counts.items() if c == best)
    background = {}
    for name in self._spec.model_inputs:
      values = sample[name][:self._background_size]
      background[name] = (values.astype(np.float32) if name in self._spec.float_inputs
                          else values.astype(object))
    is_float = {n: n in self._spec.float_inputs for n in self._spec.model_inputs}
    return ReferenceStats(list(self._spec.model_inputs), is_float, mean, median, std, mode,
                          background, count)


class _DecodeForStats(beam.DoFn):
  def __init__(self, spec: FeatureSpec, seed: int):
    self._spec = spec
    self._seed = seed
    self._decoder = None

  def setup(self):
    self._decoder = ExampleDecoder(self._spec)

  def process(self, batch):
    records = [r for _, _, r in batch]
    files = [f for _, f, _ in batch]
    features, _, _ = self._decoder.decode(records, files, need_label=False)
    keep = finite_rows(features, self._spec.float_inputs)
    keys = np.asarray([_sample_key(r, self._seed) for r in records], dtype=np.uint64)
    yield {k: v[keep] for k, v in features.items()}, keys[keep]


class ComputeReferenceStats(beam.PTransform):
  """Batches of (index, file, record) of a split -> one ReferenceStats."""

  def __init__(self, spec: FeatureSpec, background_size: int, seed: int):
    super().__init__()
    self._spec = spec
    self._background_size = background_size
    self._seed = seed

  def expand(self, batches):
    return (batches
            | 'Decode' >> beam.ParDo(_DecodeForStats(self._spec, self._seed))
            | 'Combine' >> beam.CombineGlobally(
                ReferenceStatsCombineFn(self._spec, self._background_size)))


# -- attribution ----------------------------------------------------------------

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


@dataclasses.dataclass
class ModelSettings:
  """Where the model is; how to load it (signature, head, space) is in the config."""
  path: str
  transform_graph: Optional[str] = None


class AttributeBatchFn(beam.DoFn):
  """Explains a batch of examples with every configured method.

  Main output: one Arrow table per (batch, method) of the per-example table,
  with row_schema (artifact_io.per_example_schema).
  Tagged output 'partials': per-batch (slice_key, method) sums, and counts of
  skipped rows, for the split summary.
  Tagged output 'errors': ((method, slice name, 'absolute'|'relative'), errors)
  per batch and slice, a list of per-example errors for batched quantiles.
  """

  PARTIALS = 'partials'
  ERRORS = 'errors'
  COMPUTE_MILLIS = 'attribution_compute_millis'

  def __init__(self, model: ModelSettings, config_json: str, spec: FeatureSpec,
               row_schema, maps_dir: Optional[str] = None):
    self._model_settings = model
    self._row_schema = row_schema
    self._maps_dir = maps_dir
    self._config_json = config_json
    self._spec = spec
    self._model = None
    self._methods = None
    self._config = None
    self._decoder = None
    self._groups = {}
    self._compute_millis = beam.metrics.Metrics.counter('tfx_explain', self.COMPUTE_MILLIS)

  def setup(self):
    from tfx_explain.config import AttributionConfig  # pylint: disable=g-import-not-at-top
    self._config = AttributionConfig.from_json(self._config_json)
    self._methods = self._config.methods
    self._model = self._config.load_model(self._model_settings.path,
                                          self._model_settings.transform_graph, shared=True)
    self._decoder = ExampleDecoder(self._spec)
    self._groups = self._group_columns(self._spec)

  def process(self, batch, reference: Optional[ReferenceStats]):
    if self._spec.image_shape:
      yield from self._process_images(batch)
      return
    if reference is None:
      raise InputDataError('The reference split has no usable examples (empty, or every row '
                           'has NaN/inf values); baselines and the background need it.')
    need_label = any(m.requires_labels for m in self._methods)
    records = [r for _, _, r in batch]
    files = [f for _, f, _ in batch]
    indices = np.asarray([i for i, _, _ in batch], np.int64)
    features, labels, slice_values = self._decoder.decode(records, files, need_label)
    keep = finite_rows(features, self._spec.float_inputs)
    if labels is not None and labels.dtype.kind == 'f':
      keep &= np.isfinite(labels)
    skipped = int((~keep).sum())
    if skipped:
      yield beam.pvalue.TaggedOutput(self.PARTIALS, ('__skipped_non_finite__', skipped))
      if not keep.any():
        return
      rows = np.nonzero(keep)[0]
      features = {k: v[rows] for k, v in features.items()}
      labels = labels[rows] if labels is not None else None
      slice_values = {k: [v[i] for i in rows] for k, v in slice_values.items()}
      indices = indices[rows]
    names = self._model.input_names
    slice_keys = [slice_keys_for(self._config.slicing_specs, slice_values, i)
                  for i in range(len(indices))]
    for method in self._methods:
      started = time.perf_counter()
      result = method.attribute(self._model, features, reference, self._config.target,
                                labels if method.requires_labels else None, indices)
      self._compute_millis.inc(int(round((time.perf_counter() - started) * 1000)))
      yield from self._emit(result, result.attributions, names, indices, slice_keys)

  def _process_images(self, batch):
    """Image models: maps go to compressed float16 shards, scalar summaries to the table."""
    from tfx_explain.engine import image  # pylint: disable=g-import-not-at-top
    records = [r for _, _, r in batch]
    files = [f for _, f, _ in batch]
    indices = np.asarray([i for i, _, _ in batch], np.int64)
    features, _, slice_values = self._decoder.decode(records, files, need_label=False)
    [name] = self._spec.model_inputs
    keep = finite_rows(features, [name])
    skipped = int((~keep).sum())
    if skipped:
      yield beam.pvalue.TaggedOutput(self.PARTIALS, ('__skipped_non_finite__', skipped))
      rows = np.nonzero(keep)[0]
      if not len(rows):
        return
      features = {name: features[name][rows]}
      slice_values = {k: [v[i] for i in rows] for k, v in slice_values.items()}
      indices = indices[rows]
    slice_keys = [slice_keys_for(self._config.slicing_specs, slice_values, i)
                  for i in range(len(indices))]
    columns = image.region_feature_names(name)
    for method in self._methods:
      started = time.perf_counter()
      result = method.attribute(self._model, features, target=self._config.target,
                                example_ids=indices)
      result.value_kind = method.value_kind
      self._compute_millis.inc(int(round((time.perf_counter() - started) * 1000)))
      display = result.display
      shard = f'{result.method}-{int(indices[0]):012d}.npz'
      write_maps(os.path.join(self._maps_dir, shard), indices, result.maps)
      extra = {'map_file': shard, 'map_rows': list(range(len(indices)))}
      yield from self._emit(result, image.region_totals(display), columns, indices, slice_keys,
                            extra, display)

  @staticmethod
  def _group_columns(spec: FeatureSpec) -> Dict[str, List[int]]:
    """Vector feature -> its element columns in the table, in spec order."""
    if spec.image_shape or not spec.vectors:
      return {}
    position = {name: i for i, name in enumerate(spec.model_inputs)}
    return {name: [position[element_name(name, i)] for i in range(size)]
            for name, size in spec.vectors}

  def _emit(self, result, values, names, indices, slice_keys, extra=None, display=None):
    """Per-example rows, completeness errors and per-slice partial sums of one result."""
    import pyarrow as pa  # pylint: disable=g-import-not-at-top
    error = result.completeness_error
    gap = np.abs(result.prediction - result.baseline_prediction)
    relative = None
    if error is not None:
      relative = error / np.maximum(gap, 1e-6)
    # The batch's rows as one Arrow table: one Beam element per batch and
    # method, not per example, and no per-value Python work.
    n = len(indices)
    values = np.asarray(values, np.float64)

    def floats(column):
      if column is None:
        return pa.nulls(n, pa.float64())
      column = np.asarray(column, np.float64)
      return pa.array(column, mask=np.isnan(column))   # NaN (skipped) -> null

    columns = {
        'example_index': pa.array(np.asarray(indices, np.int64)),
        'method': pa.array([result.method] * n, pa.string()),
        'target': pa.array(np.asarray(result.target, np.int64)),
        'output_kind': pa.array([result.output_kind] * n, pa.string()),
        'value_kind': pa.array([result.value_kind] * n, pa.string()),
        'prediction': floats(result.prediction),
        'baseline_prediction': floats(result.baseline_prediction),
        'completeness_error': floats(error),
        'relative_completeness_error': floats(relative),
    }
    for j, name in enumerate(names):
      columns[name] = floats(values[:, j])
    if extra:
      columns['map_file'] = pa.array([extra['map_file']] * n, pa.string())
      columns['map_row'] = pa.array(np.asarray(extra['map_rows'], np.int64))
    yield pa.Table.from_pydict(columns, schema=self._row_schema)
    groups: Dict[Tuple, List[int]] = {}   # slice key -> rows of this batch in it
    for i, keys in enumerate(slice_keys):
      for key in keys:
        groups.setdefault(key, []).append(i)
    if error is not None:
      # One list per (method, slice, kind) and batch, for batched quantiles.
      for key, members in groups.items():
        label = slice_name(key)
        yield beam.pvalue.TaggedOutput(
            self.ERRORS, ((result.method, label, 'absolute'), error[members].tolist()))
        yield beam.pvalue.TaggedOutput(
            self.ERRORS, ((result.method, label, 'relative'), relative[members].tolist()))
    # Per-slice partial sums for this batch.
    for key, members in groups.items():
      block = values[members]
      finite = ~np.isnan(block)
      partial = {
          'examples': len(members),
          'count': finite.sum(axis=0).astype(np.int64),
          'sum': np.where(finite, block, 0.0).sum(axis=0),
          'sum_abs': np.where(finite, np.abs(block), 0.0).sum(axis=0),
          'error_sum': float(error[members].sum()) if error is not None else 0.0,
          'relative_error_sum': float(relative[members].sum()) if relative is not None else 0.0,
          'prediction_sum': float(result.prediction[members].sum()),
      }
      if self._groups:
        # Each vector feature's total per example (what its elements add up to).
        totals = np.stack([np.where(np.isnan(block[:, elements]), 0.0,
                                    block[:, elements]).sum(axis=1)
                           for elements in self._groups.values()], axis=1)
        attributed = np.stack([~np.isnan(block[:, elements]).all(axis=1)
                               for elements in self._groups.values()], axis=1)
        partial['group_count'] = attributed.sum(axis=0).astype(np.int64)
        partial['group_sum'] = np.where(attributed, totals, 0.0).sum(axis=0)
        partial['group_sum_abs'] = np.where(attributed, np.abs(totals), 0.0).sum(axis=0)
      if display is not None:
        partial['map_sum'] = display[members].sum(axis=0)
      yield beam.pvalue.TaggedOutput(self.PARTIALS, ((key, result.method), partial))


def concat_tables(tables):
  """Arrow tables of one schema as one (a Parquet row group when written batched)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  return pa.concat_tables(list(tables))


def merge_partials(partials: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
  merged = None
  for p in partials:
    if merged is None:
      merged = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    else:
      for k, v in p.items():
        merged[k] = merged[k] + v
  return merged


def write_maps(path: str, indices: np.ndarray, maps: np.ndarray) -> None:
  """A shard of per-example maps: float16, compressed, keyed by example index."""
  import io  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  np.savez_compressed(buffer, example_index=indices, maps=maps.astype(np.float16))
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())


def partials_to_json(item) -> Dict[str, Any]:
  (slice_key, method), merged = item
  extra = {'map_mean': (merged['map_sum'] / merged['examples']).tolist()} \
      if 'map_sum' in merged else {}
  if 'group_sum' in merged:
    extra.update({key: merged[key].tolist()
                  for key in ('group_count', 'group_sum', 'group_sum_abs')})
  return {**extra,
      'slice_key': [list(kv) for kv in slice_key], 'method': method,
      'examples': int(merged['examples']), 'count': merged['count'].tolist(),
      'sum': merged['sum'].tolist(), 'sum_abs': merged['sum_abs'].tolist(),
      'error_sum': merged['error_sum'], 'relative_error_sum': merged['relative_error_sum'],
      'prediction_sum': merged['prediction_sum'],
  }
