"""Reading TFRecord files: our own checked reader, and batches of indexed records.

    files --ReadIndexedExamples--> batches of (example_index, file, record)
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import google_crc32c

from tfx_explain.beam.feature_spec import InputDataError


def _compression(path: str) -> str:
  return 'GZIP' if path.endswith('.gz') else ''


def _masked_crc(data) -> int:
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


_READ_BLOCK = 1 << 20   # decompressed bytes parsed per read


def read_records(path: str, check_data: bool = True) -> Iterable[bytes]:
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
    for record in read_records(path):
      records.append(record)
      sources.append(path)
      if len(records) >= limit:
        return records, sources
  return records, sources


def count_records(path: str) -> Tuple[str, int]:
  # Framing only: the reading pass checks every record's data.
  return path, sum(1 for _ in read_records(path, check_data=False))


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
  for i, record in enumerate(read_records(path)):
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

