"""Reference statistics of a split: exact means and counts, and a hash-ordered sample.

    batches of (index, file, record) --ComputeReferenceStats--> one ReferenceStats
"""

from __future__ import annotations

import hashlib
import math
from typing import Dict, Optional

import apache_beam as beam
import numpy as np

from tfx_explain.beam.decoding import ExampleDecoder, finite_rows
from tfx_explain.beam.feature_spec import FeatureSpec
from tfx_explain.beam.worker import set_tf_threads
from tfx_explain.engine.reference import ReferenceStats


def _sample_key(record: bytes, seed: int) -> int:
  digest = hashlib.blake2b(record, digest_size=8, key=seed.to_bytes(8, 'little')).digest()
  return int.from_bytes(digest, 'little')


def _value_bytes(value) -> bytes:
  if isinstance(value, bytes):
    return value
  if isinstance(value, str):
    return value.encode('utf-8')
  if isinstance(value, np.ndarray):
    return b'|'.join(_value_bytes(v) for v in value) if value.dtype == object else \
        value.tobytes()
  return np.asarray(value).tobytes()


def row_keys(features: Dict[str, np.ndarray], seed: int) -> np.ndarray:
  """Sample keys from the decoded values of each row, not its serialized bytes.

  A tf.Example's feature map serializes in an order that follows the writing
  process's string hashing, so the same row written twice (ExampleGen re-run on
  the same CSV) can have other bytes; its decoded values are the same.
  """
  names = sorted(features)
  n = len(features[names[0]]) if names else 0
  return np.asarray([_sample_key(b'\x00'.join(name.encode() + b'=' + _value_bytes(
      features[name][i]) for name in names), seed) for i in range(n)], dtype=np.uint64)


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
  def __init__(self, spec: FeatureSpec, seed: int, tf_threads: Optional[int] = None):
    self._spec = spec
    self._seed = seed
    self._tf_threads = tf_threads
    self._decoder = None

  def setup(self):
    set_tf_threads(self._tf_threads)   # decoding may be this process's first TensorFlow op
    self._decoder = ExampleDecoder(self._spec)

  def process(self, batch):
    records = [r for _, _, r in batch]
    files = [f for _, f, _ in batch]
    features, _, _ = self._decoder.decode(records, files, need_label=False)
    keep = finite_rows(features, self._spec.float_inputs)
    keys = row_keys(features, self._seed)
    yield {k: v[keep] for k, v in features.items()}, keys[keep]


class ComputeReferenceStats(beam.PTransform):
  """Batches of (index, file, record) of a split -> one ReferenceStats."""

  def __init__(self, spec: FeatureSpec, background_size: int, seed: int,
               tf_threads: Optional[int] = None):
    super().__init__()
    self._spec = spec
    self._background_size = background_size
    self._seed = seed
    self._tf_threads = tf_threads

  def expand(self, batches):
    return (batches
            | 'Decode' >> beam.ParDo(_DecodeForStats(self._spec, self._seed, self._tf_threads))
            | 'Combine' >> beam.CombineGlobally(
                ReferenceStatsCombineFn(self._spec, self._background_size)))

