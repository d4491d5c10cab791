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
