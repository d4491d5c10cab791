"""The per-example table (Parquet), image maps (npz) and the reference statistics."""

from __future__ import annotations

import io
import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfx_explain.artifacts import layout

# Per-example table columns before the feature columns, with their Arrow types.
PER_EXAMPLE_META_COLUMNS = (
    ('example_index', 'int64'), ('method', 'string'), ('target', 'int64'),
    ('output_kind', 'string'), ('value_kind', 'string'), ('prediction', 'float64'),
    ('baseline_prediction', 'float64'), ('completeness_error', 'float64'),
    ('relative_completeness_error', 'float64'), ('steps', 'int64'))
# The slices (other than Overall) an example belongs to, by name ('island=Biscoe'):
# validation resamples a slice's examples from the table alone.
SLICES_COLUMN = 'slices'
# Image models only: where each example's map is (shard file under maps/, row in it).
PER_EXAMPLE_MAP_COLUMNS = (('map_file', 'string'), ('map_row', 'int64'))
# The table's own columns, which no feature column may be named.
PER_EXAMPLE_META_NAMES = frozenset([name for name, _ in PER_EXAMPLE_META_COLUMNS] +
                                   [SLICES_COLUMN])
PER_EXAMPLE_MAP_NAMES = frozenset(name for name, _ in PER_EXAMPLE_MAP_COLUMNS)
# Token methods only: each example's words and their scores, in text order (null for
# other methods).
TOKENS_COLUMN = 'tokens'
TOKEN_SCORES_COLUMN = 'token_scores'
PER_EXAMPLE_TOKEN_NAMES = frozenset([TOKENS_COLUMN, TOKEN_SCORES_COLUMN])
NON_FEATURE_COLUMNS = PER_EXAMPLE_META_NAMES | PER_EXAMPLE_MAP_NAMES | PER_EXAMPLE_TOKEN_NAMES
# Sampling estimators: the standard error of each feature's attribution, in a
# column named with this prefix and the feature (null for other methods).
STANDARD_ERROR_PREFIX = 'standard_error:'


def standard_error_column(feature: str) -> str:
  return STANDARD_ERROR_PREFIX + feature
# Rows per Parquet row group: readers stream one group at a time, so this bounds
# their memory; writers gather this many rows before writing a group.
PER_EXAMPLE_ROW_GROUP_ROWS = 16384


def per_example_schema(feature_names: Sequence[str], image: bool = False,
                       standard_errors: bool = False, tokens: bool = False):
  """Arrow schema of the per-example table: metadata columns, one float64 per feature.

  standard_errors: a `standard_error:<feature>` column per feature follows, for
  runs with a sampling estimator.
  tokens: `tokens` (list of strings) and `token_scores` (list of float64) follow,
  for runs with a token method.
  """
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  columns = [(name, pa.type_for_alias(kind)) for name, kind in PER_EXAMPLE_META_COLUMNS]
  columns.append((SLICES_COLUMN, pa.list_(pa.string())))
  columns += [(name, pa.float64()) for name in feature_names]
  if standard_errors:
    columns += [(standard_error_column(name), pa.float64()) for name in feature_names]
  if image:
    columns += [(name, pa.type_for_alias(kind)) for name, kind in PER_EXAMPLE_MAP_COLUMNS]
  if tokens:
    columns += [(TOKENS_COLUMN, pa.list_(pa.string())),
                (TOKEN_SCORES_COLUMN, pa.list_(pa.float64()))]
  return pa.schema(columns)


def feature_columns(frame) -> list:
  """The feature columns of a per-example table, in table order."""
  return [c for c in frame.columns
          if c not in NON_FEATURE_COLUMNS and not c.startswith(STANDARD_ERROR_PREFIX)]


def standard_error_frame(frame):
  """The standard-error columns of a per-example table, renamed to their features."""
  columns = [c for c in frame.columns if c.startswith(STANDARD_ERROR_PREFIX)]
  return frame[columns].rename(columns=lambda c: c[len(STANDARD_ERROR_PREFIX):])


class _SeekableGFile(io.RawIOBase):
  """A read-only GFile that Arrow can seek in, so a Parquet file is read a row group at a time."""

  def __init__(self, path: str):
    super().__init__()
    self._file = tf.io.gfile.GFile(path, 'rb')
    self._size = tf.io.gfile.stat(path).length

  def readable(self):
    return True

  def seekable(self):
    return True

  def tell(self):
    return self._file.tell()

  def seek(self, offset, whence=io.SEEK_SET):
    if whence == io.SEEK_CUR:
      offset += self._file.tell()
    elif whence == io.SEEK_END:
      offset += self._size
    self._file.seek(offset)
    return offset

  def readinto(self, buffer):
    data = self._file.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def close(self):
    self._file.close()
    super().close()


def per_example_frames(artifact_or_uri, split: str = 'eval'):
  """Per-example rows of a split as DataFrames, one Parquet row group at a time (unsorted).

  Memory stays bounded by the row group, not the shard: a shard written by one
  worker can hold a whole split.
  """
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  path = os.path.join(layout.existing_split_dir(artifact_or_uri, split), layout.PER_EXAMPLE_DIR)
  for name in sorted(tf.io.gfile.glob(os.path.join(path, '*.parquet'))):
    with _SeekableGFile(name) as raw:
      parquet = pq.ParquetFile(raw)
      for group in range(parquet.num_row_groups):
        yield parquet.read_row_group(group).to_pandas()


def load_attributions(artifact_or_uri, split: str = 'eval', method: Optional[str] = None):
  """Per-example attributions of one split as a pandas DataFrame.

  Columns: example_index, method, target, output_kind, value_kind, prediction,
  baseline_prediction, completeness_error, relative_completeness_error, steps
  (model evaluations the method chose for the example, where it chooses them),
  slices (the names of the slices other than Overall the example is in), then one column per feature (NaN where a method skipped the feature), and for
  runs with a sampling estimator `standard_error:<feature>` columns
  (`standard_error_frame`). Sorted by (method, example_index).
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top
  frames = list(per_example_frames(artifact_or_uri, split))
  if not frames:
    folder = os.path.join(layout.split_uri(layout.uri_of(artifact_or_uri), split),
                          layout.PER_EXAMPLE_DIR)
    raise FileNotFoundError(f'No per-example attribution files under {folder}.')
  frame = pd.concat(frames, ignore_index=True)
  if method is not None:
    if method not in set(frame['method']):
      raise ValueError(f'Method {method!r} not in these attributions; '
                       f'available: {sorted(set(frame["method"]))}.')
    frame = frame[frame['method'] == method]
  return frame.sort_values(['method', 'example_index'], kind='stable').reset_index(drop=True)


def _write_npz(path: str, **arrays) -> None:
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())


def _read_npz(path: str) -> Dict[str, np.ndarray]:
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = np.load(io.BytesIO(f.read()), allow_pickle=False)   # maps are plain arrays
    return {key: data[key] for key in data.files}


def map_shard_name(method: str, first_index: int) -> str:
  return f'{method}-{int(first_index):012d}.npz'


def write_maps(path: str, indices: np.ndarray, maps: np.ndarray) -> None:
  """A shard of per-example maps: float16, compressed, keyed by example index."""
  _write_npz(path, example_index=indices, maps=maps.astype(np.float16))


def load_maps(artifact_or_uri, split: str = 'eval', method: Optional[str] = None,
              below: Optional[int] = None):
  """Per-example maps of an image model: (example_index [N], maps [N, H, W, C] float16).

  below: only examples with a smaller index; shards that start at or past it
  are not read (a shard holds one batch, whose indices start at its name's).
  """
  directory = os.path.join(layout.existing_split_dir(artifact_or_uri, split), layout.MAPS_DIR)
  pattern = f'{method}-*.npz' if method else '*.npz'
  indices, maps = [], []
  for path in sorted(tf.io.gfile.glob(os.path.join(directory, pattern))):
    if below is not None and int(os.path.basename(path)[:-4].rsplit('-', 1)[1]) >= below:
      continue
    data = _read_npz(path)
    keep = (data['example_index'] < below) if below is not None else slice(None)
    indices.append(data['example_index'][keep])
    maps.append(data['maps'][keep])
  if not indices:
    raise FileNotFoundError(f'No maps{" for " + method if method else ""} under {directory}.')
  index = np.concatenate(indices)
  order = np.argsort(index, kind='stable')
  return index[order], np.concatenate(maps)[order]


def write_mean_maps(split_directory: str, mean_maps: Dict[str, np.ndarray]) -> None:
  _write_npz(os.path.join(split_directory, layout.MEAN_MAPS_FILE), **mean_maps)


def load_mean_maps(artifact_or_uri, split: str = 'eval') -> Dict[str, np.ndarray]:
  return _read_npz(os.path.join(layout.existing_split_dir(artifact_or_uri, split),
                                layout.MEAN_MAPS_FILE))


TOKEN_SUMMARY_COLUMNS = ('slice', 'method', 'token', 'count', 'mean_attribution',
                         'mean_absolute_attribution')


def write_token_summary(split_directory: str, rows) -> None:
  """token_summary.parquet from (slice name, method, token, count, sum, sum of |score|) rows."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  rows = sorted(rows, key=lambda r: (r[0], r[1], -r[5] / r[3], r[2]))
  columns = list(zip(*rows)) if rows else [[]] * 6
  counts = np.asarray(columns[3], np.int64)
  table = pa.table({
      'slice': pa.array(columns[0], pa.string()), 'method': pa.array(columns[1], pa.string()),
      'token': pa.array(columns[2], pa.string()), 'count': pa.array(counts),
      'mean_attribution': pa.array(np.asarray(columns[4], np.float64) / np.maximum(counts, 1)),
      'mean_absolute_attribution': pa.array(
          np.asarray(columns[5], np.float64) / np.maximum(counts, 1))})
  buffer = io.BytesIO()
  pq.write_table(table, buffer)
  with tf.io.gfile.GFile(os.path.join(split_directory, layout.TOKEN_SUMMARY_FILE), 'wb') as f:
    f.write(buffer.getvalue())


def load_token_summary(artifact_or_uri, split: str = 'eval', method: Optional[str] = None,
                       slice_name: Optional[str] = None):
  """Per-word summaries of a text model's token attributions, as a DataFrame.

  One row per (slice, method, word): `count` (occurrences in the split's
  examples of that slice), `mean_attribution` and `mean_absolute_attribution`
  over them; within a slice and method, words by mean |score|, largest first.
  `slice` is 'Overall' or a slice's name ('label=1').
  """
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  path = os.path.join(layout.existing_split_dir(artifact_or_uri, split),
                      layout.TOKEN_SUMMARY_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'No token summary at {path}: the run had no token method '
                            '(TokenShap, TokenIntegratedGradients, TokenExpectedGradients).')
  with tf.io.gfile.GFile(path, 'rb') as f:
    frame = pq.read_table(io.BytesIO(f.read())).to_pandas()
  if method is not None:
    frame = frame[frame['method'] == method]
  if slice_name is not None:
    frame = frame[frame['slice'] == slice_name]
  return frame.reset_index(drop=True)


def word_importance(token_summary, method: str, slice_name: str = 'Overall',
                    min_count: int = 1) -> Dict[str, float]:
  """Word -> mean |score| of one method on one slice of a token summary (load_token_summary),
  words seen at least min_count times."""
  rows = token_summary[(token_summary['method'] == method) &
                       (token_summary['slice'] == slice_name) &
                       (token_summary['count'] >= min_count)]
  return dict(zip(rows['token'], rows['mean_absolute_attribution'].astype(float)))


def load_reference(artifact_or_uri):
  """reference.json: the baselines and background sample the run used."""
  from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(os.path.join(layout.uri_of(artifact_or_uri),
                                      layout.REFERENCE_FILE)) as f:
    return ReferenceStats.from_json(f.read())
