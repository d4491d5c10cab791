"""Reference statistics in Beam: exact sums, whatever the batching."""

import math

import numpy as np
import pytest

from tfx_explain.beam.feature_spec import FeatureSpec
from tfx_explain.beam.reference_stats import (ReferenceStatsCombineFn, _sample_key, exact_sum,
                                             exact_sum_to_float)


@pytest.mark.parametrize('values', [
    [],
    [0.1] * 10,
    [1e16, 1.0, -1e16],
    [1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, 0.0, -0.0, 3.5],
    list(np.random.default_rng(0).normal(size=500) * 10.0 ** np.random.default_rng(1).integers(
        -300, 300, size=500)),
])
def test_exact_sum_is_fsum_in_any_grouping(values):
  values = np.asarray(values, np.float64)
  expected = math.fsum(values.tolist())
  assert exact_sum_to_float(exact_sum(values)) == expected
  for cut in (1, len(values) // 3, len(values) - 1):
    parts = exact_sum(values[:cut]) + exact_sum(values[cut:][::-1])
    assert exact_sum_to_float(parts) == expected


def test_reference_stats_do_not_depend_on_batching():
  rng = np.random.default_rng(3)
  n = 400
  columns = {'x': (rng.normal(size=n) * 1e3 + 1e9).astype(np.float32),
             'c': np.asarray(rng.choice([b'a', b'b', b'c'], size=n), dtype=object)}
  keys = rng.integers(0, 2 ** 63, size=n).astype(np.uint64)
  spec = FeatureSpec(model_inputs=('x', 'c'), input_dtypes=('float32', 'string'))
  combine = ReferenceStatsCombineFn(spec, background_size=20, sample_size=50)

  def stats(cuts):
    accumulators = []
    for start, stop in zip([0] + cuts, cuts + [n]):
      acc = combine.create_accumulator()
      part = {k: v[start:stop] for k, v in columns.items()}
      accumulators.append(combine.add_input(acc, (part, keys[start:stop])))
    return combine.extract_output(combine.merge_accumulators(accumulators[::-1]))

  one, many = stats([]), stats([7, 100, 101, 350])
  assert one.mean == many.mean and one.std == many.std and one.median == many.median
  assert one.mode == many.mode and one.count == many.count == n
  np.testing.assert_array_equal(one.background['x'], many.background['x'])
  assert one.mean['x'] == math.fsum(columns['x'].astype(np.float64).tolist()) / n


def test_background_prefix_is_a_uniform_sample_of_rows_stored_sorted():
  # Rows stored sorted by x, in batches: the background is ordered by the records' keyed
  # hashes, so its first k rows (what KernelShap takes) are a uniform sample, not the
  # smallest x.
  n, k = 2000, 20
  x = np.sort(np.random.default_rng(5).normal(size=n)).astype(np.float32)
  records = [f'row {i}: {v!r}'.encode() for i, v in enumerate(x.tolist())]
  keys = np.asarray([_sample_key(r, 0) for r in records], np.uint64)
  spec = FeatureSpec(model_inputs=('x',), input_dtypes=('float32',))
  combine = ReferenceStatsCombineFn(spec, background_size=100, sample_size=500)
  accumulators = [combine.add_input(combine.create_accumulator(),
                                    ({'x': x[i:i + 250]}, keys[i:i + 250]))
                  for i in range(0, n, 250)]
  stats = combine.extract_output(combine.merge_accumulators(accumulators))
  expected = x[np.argsort(keys, kind='stable')[:100]]
  np.testing.assert_array_equal(stats.background['x'], expected)
  # Stated bound: the prefix mean within 4 standard errors (sd / sqrt(k)) of the mean.
  prefix = stats.background['x'][:k].astype(np.float64)
  assert abs(prefix.mean() - x.mean()) < 4 * x.std() / np.sqrt(k), prefix.mean()


def test_sample_keys_follow_values_not_serialized_bytes():
  """The same row serialized with its features in another order keys the same, so
  re-ingesting the same data draws the same background."""
  import tensorflow as tf
  from tfx_explain.beam.decoding import ExampleDecoder
  from tfx_explain.beam.reference_stats import row_keys

  def features_entry(name, feature):
    # A one-entry Features message is exactly one serialized map entry.
    return tf.train.Features(feature={name: feature}).SerializeToString()

  def example(order):
    values = {'x': tf.train.Feature(float_list=tf.train.FloatList(value=[1.5])),
              'c': tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'a']))}
    features = b''.join(features_entry(name, values[name]) for name in order)
    assert len(features) < 128   # one varint byte of length
    return b'\x0a' + bytes([len(features)]) + features   # Example.features, field 1

  first, second = example(['x', 'c']), example(['c', 'x'])
  assert first != second
  spec = FeatureSpec(model_inputs=('x', 'c'), input_dtypes=('float32', 'string'))
  features, _, _ = ExampleDecoder(spec).decode([first, second], ['f', 'f'], need_label=False)
  keys = row_keys(features, seed=3)
  assert keys[0] == keys[1] and row_keys(features, seed=4)[0] != keys[0]
