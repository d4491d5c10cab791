"""Our TFRecord reader: every record of a good file, a clear error for a damaged one."""

import pytest
import tensorflow as tf

from tfx_explain.beam import reading
from tfx_explain.beam.feature_spec import InputDataError
from tfx_explain.beam.reading import count_records, read_records


def write(path, payloads, gzip):
  options = tf.io.TFRecordOptions(compression_type='GZIP' if gzip else '')
  with tf.io.TFRecordWriter(str(path), options) as writer:
    for payload in payloads:
      writer.write(payload)


@pytest.mark.parametrize('gzip', [False, True])
def test_reads_what_tensorflow_wrote(tmp_path, gzip):
  payloads = [f'record {i}'.encode() * (i + 1) for i in range(40)]
  path = tmp_path / ('data.gz' if gzip else 'data')
  write(path, payloads, gzip)
  assert list(read_records(str(path))) == payloads


@pytest.mark.parametrize('gzip', [False, True])
def test_records_across_and_larger_than_read_blocks(tmp_path, monkeypatch, gzip):
  # Small blocks make records straddle block ends and exceed a whole block.
  monkeypatch.setattr(reading, '_READ_BLOCK', 64)
  payloads = [bytes([i % 256]) * size for i, size in enumerate([1, 50, 64, 65, 200, 3, 1000, 0, 7])]
  path = tmp_path / ('data.gz' if gzip else 'data')
  write(path, payloads, gzip)
  assert list(read_records(str(path))) == payloads
  assert count_records(str(path)) == (str(path), len(payloads))


def test_flipped_byte_is_a_checksum_error(tmp_path):
  path = tmp_path / 'data'
  write(path, [b'a' * 100, b'b' * 100], gzip=False)
  data = bytearray(path.read_bytes())
  data[40] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(InputDataError, match=r'data checksum mismatch'):
    list(read_records(str(path)))


@pytest.mark.parametrize('gzip', [False, True])
def test_every_truncation_is_an_error(tmp_path, gzip):
  # (An uncompressed file cut exactly between records is a valid, shorter file;
  # these cuts never fall there.)
  path = tmp_path / ('data.gz' if gzip else 'data')
  write(path, [bytes([i]) * 50 for i in range(20)], gzip)
  data = path.read_bytes()
  for cut in range(1, len(data), max(1, len(data) // 25)):
    path.write_bytes(data[:cut])
    with pytest.raises(InputDataError, match='corrupt or truncated'):
      list(read_records(str(path)))


def _read_all(units, batch_size=10):
  """Every (example_index, path, record) of the units, read by one _ReadUnitFn in that order."""
  fn = reading._ReadUnitFn(batch_size)
  rows = []
  for unit in units:
    for batch in fn.process(unit):
      assert 0 < len(batch) <= batch_size
      rows.extend(batch)
  fn.teardown()
  return rows


@pytest.mark.parametrize('gzip', [False, True])
def test_one_large_file_is_cut_into_even_work_units(tmp_path, monkeypatch, gzip):
  # Small read blocks: units start inside blocks and records straddle them.
  monkeypatch.setattr(reading, '_READ_BLOCK', 256)
  big = [f'big {i}'.encode() * (1 + i % 7) for i in range(1000)]
  small = [f'small {i}'.encode() for i in range(25)]
  paths = [str(tmp_path / name) + ('.gz' if gzip else '') for name in ('a', 'b')]
  write(paths[0], big, gzip)
  write(paths[1], small, gzip)
  indexes = [reading.index_records(path, 10) for path in paths]
  assert [count for _, count, _ in indexes] == [1000, 25]
  units = reading.work_units(indexes, batch_size=10, units_per_split=8)
  big_units = [u for u in units if u.path == paths[0]]
  # The large file alone is several units of whole batches, all the same size but its last.
  assert len(big_units) >= 7
  assert len({u.count for u in big_units[:-1]}) == 1 and big_units[0].count % 10 == 0
  assert big_units[-1].count <= big_units[0].count
  expected = [(i, paths[0], r) for i, r in enumerate(big)] + [
      (1000 + i, paths[1], r) for i, r in enumerate(small)]
  rows = _read_all(units)
  assert rows == expected
  indices = [i for i, _, _ in rows]
  assert len(set(indices)) == len(indices) == 1025
  # Any order of the units (as workers take them), each record once at its own index.
  for order in (units[::-1], units[1::2] + units[::2], units[3:] + units[:3]):
    assert sorted(_read_all(order)) == expected
  # A limit cuts the split: the first 333 examples only.
  limited = reading.work_units(indexes, batch_size=10, limit=333, units_per_split=8)
  assert _read_all(limited) == expected[:333]


def test_read_indexed_examples_in_a_beam_pipeline(tmp_path):
  import apache_beam as beam
  from apache_beam.testing.util import assert_that, equal_to
  payloads = [f'record {i}'.encode() for i in range(300)]
  path = str(tmp_path / 'one.gz')
  write(path, payloads, gzip=True)
  with beam.Pipeline() as pipeline:
    rows = (pipeline
            | reading.ReadIndexedExamples([path], batch_size=16, units_per_split=5)
            | beam.FlatMap(lambda batch: batch))
    assert_that(rows, equal_to([(i, path, r) for i, r in enumerate(payloads)]))


def test_a_unit_past_the_records_of_a_file_is_an_error(tmp_path):
  path = str(tmp_path / 'data.gz')
  write(path, [b'x' * 10] * 30, gzip=True)
  # A file that changed between indexing and reading.
  with pytest.raises(InputDataError, match='fewer records than indexed'):
    _read_all([reading.WorkUnit(path, 20, 20, reading.index_records(path, 10)[2][2], 20)])
