"""Reading TFRecord files: our own checked reader, and batches of indexed records.

    files --ReadIndexedExamples--> batches of (example_index, file, record)
    files --ReadExamples-->        batches of (record number in its file, file, record)
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import google_crc32c

from tfx_explain.beam.feature_spec import InputDataError


def _compression(path: str) -> str:
  return 'GZIP' if path.endswith('.gz') else ''


def _masked_crc(data) -> int:
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


_READ_BLOCK = 1 << 20   # decompressed bytes parsed per read


class _Stream:
  """The decompressed bytes of a TFRecord file from some position on, read in large blocks."""

  def __init__(self, path: str, position: int = 0):
    import gzip  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.path = path
    self._raw = tf.io.gfile.GFile(path, 'rb')
    self._gzip = _compression(path) == 'GZIP'
    self._stream = gzip.GzipFile(fileobj=self._raw) if self._gzip else self._raw
    self._pending = b''   # pushed back, handed out before the file's next bytes
    self.position = 0     # of the next byte handed out, in the decompressed stream
    self.skip(position)

  def read(self, size: int) -> bytes:
    if self._pending:
      chunk, self._pending = self._pending[:size], self._pending[size:]
    else:
      chunk = self._stream.read(size)
    self.position += len(chunk)
    return chunk

  def push_back(self, data: bytes) -> None:
    """Bytes read but not used: the next read starts with them."""
    if data:
      self._pending = data + self._pending
      self.position -= len(data)

  def skip(self, size: int) -> None:
    """Moves forward by size bytes: a seek, or decompressing and dropping them for gzip."""
    while size > 0 and self._pending:
      size -= len(self.read(min(size, len(self._pending))))
    if size <= 0:
      return
    if not self._gzip:
      self._raw.seek(self.position + size)
      self.position += size
      return
    while size > 0:
      chunk = self.read(min(_READ_BLOCK, size))
      if not chunk:
        return   # past the end: the next read finds nothing, and the reader says so
      size -= len(chunk)

  def close(self) -> None:
    self._stream.close()
    self._raw.close()


def _scan(stream: _Stream, first: int = 0, count: Optional[int] = None, check_data: bool = True,
          with_data: bool = True) -> Iterable[Tuple[int, Optional[bytes]]]:
  """(offset in the decompressed stream, record or None) of up to `count` records from
  the stream's position on, the first being record number `first` of its file; checks
  framing and CRCs (data CRCs unless check_data=False, and only with_data).

  Records are parsed out of large decompressed blocks, not read one by one:
  per-read Python overhead would otherwise cost more than decoding.
  """
  import gzip  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  path = stream.path

  def fail(reason):
    return InputDataError(f'Cannot read TFRecord file {path}: it is corrupt or truncated '
                          f'({reason}).')

  unpack_length, unpack_crc = struct.Struct('<Q').unpack_from, struct.Struct('<I').unpack_from
  buffer, pos, number, base = b'', 0, first, stream.position   # base: offset of buffer[0]

  def fill(needed):
    """Makes at least `needed` bytes available from pos; False at end of file."""
    nonlocal buffer, pos, base
    parts, available = [buffer[pos:]], len(buffer) - pos
    base += pos
    while available < needed:
      chunk = stream.read(max(_READ_BLOCK, needed - available))
      if not chunk:
        break
      parts.append(chunk)
      available += len(chunk)
    buffer, pos = b''.join(parts), 0
    return available >= needed

  try:
    while count is None or number < first + count:
      if len(buffer) - pos < 12 and not fill(12):
        if len(buffer) == pos:
          if count is not None:
            raise fail(f'record {number} missing: the file holds fewer records than indexed')
          return
        raise fail(f'record {number} header cut short')
      (length,) = unpack_length(buffer, pos)
      if unpack_crc(buffer, pos + 8)[0] != _masked_crc(buffer[pos:pos + 8]):
        raise fail(f'record {number} length checksum mismatch')
      if len(buffer) - pos < 16 + length and not fill(16 + length):
        raise fail(f'record {number} cut short')
      start = pos + 12
      data = None
      if with_data:
        data = buffer[start:start + length]
        if check_data and unpack_crc(buffer, start + length)[0] != _masked_crc(data):
          raise fail(f'record {number} data checksum mismatch')
      offset = base + pos
      pos = start + length + 4
      number += 1
      yield offset, data
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise fail(f'{type(e).__name__}: {e}') from e
  finally:
    # Bytes read past the last record go back: the stream continues there.
    stream.push_back(buffer[pos:])


def read_records(path: str, check_data: bool = True) -> Iterable[bytes]:
  """TFRecords of a file, checking framing and CRCs (data CRCs unless check_data=False).

  Our own reader rather than tf.data: a truncated gzip stream can end
  tf.data's iteration silently, and a run must never explain half a file.
  """
  stream = _Stream(path)
  try:
    for _, data in _scan(stream, check_data=check_data):
      yield data
  finally:
    stream.close()


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


def index_records(path: str, every: int) -> Tuple[str, int, List[int]]:
  """(path, record count, offsets of records 0, every, 2 * every, ... in the decompressed
  stream). Framing only: the reading pass checks every record's data."""
  stream = _Stream(path)
  count, offsets = 0, []
  try:
    for offset, _ in _scan(stream, with_data=False):
      if count % every == 0:
        offsets.append(offset)
      count += 1
  finally:
    stream.close()
  return path, count, offsets


def count_records(path: str) -> Tuple[str, int]:
  path, count, _ = index_records(path, 1 << 62)
  return path, count


@dataclasses.dataclass(frozen=True)
class WorkUnit:
  """Records [first, first + count) of one file, from `offset` in its decompressed stream;
  the first is example `index` of the split."""
  path: str
  first: int
  count: int
  offset: int
  index: int


# Work units hold about a split's records over this many, in whole batches: enough
# that Beam can spread a split held by one large file evenly over the workers.
WORK_UNITS_PER_SPLIT = 64


def work_units(indexes: List[Tuple[str, int, List[int]]], batch_size: int,
               limit: Optional[int] = None,
               units_per_split: int = WORK_UNITS_PER_SPLIT) -> List[WorkUnit]:
  """The split's work units, files in sorted order; each whole batches of one file.

  indexes: index_records(path, batch_size) of every file of the split.
  """
  indexes = sorted(indexes)
  total = sum(count for _, count, _ in indexes)
  if limit is not None:
    total = min(total, limit)
  batches = -(-total // batch_size)
  per_unit = max(1, -(-batches // units_per_split))    # batches per unit
  units, index = [], 0
  for path, count, offsets in indexes:
    for b in range(0, len(offsets), per_unit):
      first = b * batch_size
      take = min(per_unit * batch_size, count - first, total - index)
      if take <= 0:
        break
      units.append(WorkUnit(path, first, take, offsets[b], index))
      index += take
  return units


class _ReadUnitFn(beam.DoFn):
  """A work unit's records as lists of up to batch_size (example_index, path, record).

  Keeps the last file open: a worker handed consecutive units of a file (as
  Beam's local runners do) reads it once, instead of decompressing it from the
  start for every unit of a gzip file.
  """

  def __init__(self, batch_size: int):
    self._batch_size = batch_size
    self._stream = None

  def process(self, unit: WorkUnit):
    stream = self._stream
    if stream is None or stream.path != unit.path or stream.position > unit.offset:
      self._close()
      stream = self._stream = _Stream(unit.path, unit.offset)
    else:
      stream.skip(unit.offset - stream.position)
    batch = []
    for i, (_, record) in enumerate(_scan(stream, unit.first, unit.count)):
      batch.append((unit.index + i, unit.path, record))
      if len(batch) == self._batch_size:
        yield batch
        batch = []
    if batch:
      yield batch

  def _close(self):
    if self._stream is not None:
      self._stream.close()
      self._stream = None

  def finish_bundle(self):
    self._close()

  def teardown(self):
    self._close()


class ReadIndexedExamples(beam.PTransform):
  """Reads TFRecord files into batches: lists of (example_index, file, record).

  example_index is the record's position in the split, files in sorted order,
  so it is stable across runners and can be joined back to the examples.
  Files are indexed first (framing only, cheap next to explaining): each
  file's record count and where each batch starts. The split is then cut into
  about WORK_UNITS_PER_SPLIT work units of whole batches, which Beam spreads
  over its workers, so one large file is explained by all of them. Batches
  are cut while reading (never across files): one Beam element per batch
  rather than per example, whose handling would cost more than decoding.
  """

  def __init__(self, files: Sequence[str], max_examples: Optional[int] = None,
               batch_size: int = 512, units_per_split: int = WORK_UNITS_PER_SPLIT):
    super().__init__()
    self._files = sorted(files)
    self._max_examples = max_examples
    self._batch_size = batch_size
    self._units_per_split = units_per_split

  def expand(self, pipeline):
    indexes = (pipeline
               | 'Files' >> beam.Create(self._files)
               | 'Index' >> beam.Map(index_records, self._batch_size))
    # The indexes as a side input rather than a ToList combine: two Beam stages fewer.
    return (pipeline
            | 'Split' >> beam.Create([None])
            | 'Units' >> beam.FlatMap(lambda _, indexes, *args: work_units(indexes, *args),
                                      beam.pvalue.AsList(indexes), self._batch_size,
                                      self._max_examples, self._units_per_split)
            | 'SpreadUnits' >> beam.Reshuffle()
            | 'Read' >> beam.ParDo(_ReadUnitFn(self._batch_size)))


def _read_file(path: str, batch_size: int):
  """Lists of up to batch_size (record number in the file, path, record) of one file."""
  batch = []
  for i, record in enumerate(read_records(path)):
    batch.append((i, path, record))
    if len(batch) == batch_size:
      yield batch
      batch = []
  if batch:
    yield batch


class ReadExamples(beam.PTransform):
  """Reads TFRecord files into batches of (record number in its file, file, record).

  For passes that need every record but not its place in the split (reference
  statistics): no indexing pass, one work unit per file.
  """

  def __init__(self, files: Sequence[str], batch_size: int = 512):
    super().__init__()
    self._files = sorted(files)
    self._batch_size = batch_size

  def expand(self, pipeline):
    return (pipeline
            | 'Files' >> beam.Create(self._files)
            | 'SpreadFiles' >> beam.Reshuffle()
            | 'Read' >> beam.FlatMap(_read_file, self._batch_size))
