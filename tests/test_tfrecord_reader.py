"""Our TFRecord reader: every record of a good file, a clear error for a damaged one."""

import pytest
import tensorflow as tf

from tfx_explain.beam.attribution_transforms import InputDataError, _records


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
  assert list(_records(str(path))) == payloads


def test_flipped_byte_is_a_checksum_error(tmp_path):
  path = tmp_path / 'data'
  write(path, [b'a' * 100, b'b' * 100], gzip=False)
  data = bytearray(path.read_bytes())
  data[40] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(InputDataError, match=r'data checksum mismatch'):
    list(_records(str(path)))


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
      list(_records(str(path)))
