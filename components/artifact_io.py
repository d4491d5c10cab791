"""Layout and I/O of the Attributions artifact, in one place.

    <uri>/config.json                       the AttributionConfig used
    <uri>/report.html                       self-contained page: importances, completeness, slices
    <uri>/reference.json                    baselines and background sample (ReferenceStats)
    <uri>/Split-<name>/per_example/*.parquet  one row per (example, method)
    <uri>/Split-<name>/attributions-*.tfrecord  TFMA AttributionsForSlice per slice
    <uri>/Split-<name>/eval_config.json     TFMA EvalRun, so tfma.load_eval_result works
    <uri>/Split-<name>/summary.json         global importances, completeness, counts, speed

TFMA keys: each AttributionsForSlice holds one MetricKey per (method, statistic)
with name '<method>/<statistic>', statistic one of mean_attributions,
mean_absolute_attributions, total_attributions, total_absolute_attributions;
model_name and output_name are empty. E.g.
`result.get_attributions_for_slice(metric_name='integrated_gradients/mean_absolute_attributions')`.
"""

from __future__ import annotations

import errno
import io
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

CONFIG_FILE = 'config.json'
REPORT_FILE = 'report.html'       # self-contained page over all splits
REFERENCE_FILE = 'reference.json'
PER_EXAMPLE_DIR = 'per_example'
PER_EXAMPLE_PREFIX = 'part'
TFMA_ATTRIBUTIONS_PREFIX = 'attributions'
EVAL_CONFIG_FILE = 'eval_config.json'
SUMMARY_FILE = 'summary.json'
STAGING_DIR = '.staging'
# Image models only.
MAPS_DIR = 'maps'                 # <split>/maps/<method>-<first index>.npz: example_index, maps
MEAN_MAPS_FILE = 'mean_maps.npz'  # '<method>|<slice>' -> mean display map [H, W]
GALLERY_DIR = 'gallery'           # <split>/gallery/<method>.png overlays

TFMA_STATISTICS = ('mean_attributions', 'mean_absolute_attributions', 'total_attributions',
                   'total_absolute_attributions')


def split_dir_name(split: str) -> str:
  return f'Split-{split}'


def split_uri(uri: str, split: str) -> str:
  return os.path.join(uri, split_dir_name(split))


def files_in(directory: str) -> List[str]:
  """The files (not folders) of a directory, sorted: an Examples split's data files."""
  return sorted(f for f in tf.io.gfile.glob(os.path.join(directory, '*'))
                if not tf.io.gfile.isdir(f))


def tfma_metric_name(method: str, statistic: str) -> str:
  return f'{method}/{statistic}'


def _uri_of(artifact_or_uri) -> str:
  if isinstance(artifact_or_uri, str):
    return artifact_or_uri
  uri = getattr(artifact_or_uri, 'uri', None)
  if uri is None:
    raise TypeError(f'Expected an Attributions artifact or a URI, got {artifact_or_uri!r}.')
  return uri


def available_splits(artifact_or_uri) -> List[str]:
  uri = _uri_of(artifact_or_uri)
  if not tf.io.gfile.isdir(uri):
    return []
  return sorted(name[len('Split-'):].rstrip('/') for name in tf.io.gfile.listdir(uri)
                if name.startswith('Split-'))


def _existing_split_dir(artifact_or_uri, split: str) -> str:
  uri = _uri_of(artifact_or_uri)
  path = split_uri(uri, split)
  if not tf.io.gfile.isdir(path):
    raise FileNotFoundError(f'No split {split!r} in attributions at {uri}; '
                            f'available splits: {available_splits(uri)}.')
  return path


def load_attributions(artifact_or_uri, split: str = 'eval',
                      method: Optional[str] = None):
  """Per-example attributions of one split as a pandas DataFrame.

  Columns: example_index, method, target, output_kind, value_kind, prediction,
  baseline_prediction, completeness_error, relative_completeness_error, then one
  column per feature (NaN where a method skipped the feature). Sorted by
  (method, example_index).
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top
  frames = list(per_example_frames(artifact_or_uri, split))
  if not frames:
    folder = os.path.join(split_uri(_uri_of(artifact_or_uri), split), PER_EXAMPLE_DIR)
    raise FileNotFoundError(f'No per-example attribution files under {folder}.')
  frame = pd.concat(frames, ignore_index=True)
  if method is not None:
    if method not in set(frame['method']):
      raise ValueError(f'Method {method!r} not in these attributions; '
                       f'available: {sorted(set(frame["method"]))}.')
    frame = frame[frame['method'] == method]
  return frame.sort_values(['method', 'example_index'], kind='stable').reset_index(drop=True)


def load_maps(artifact_or_uri, split: str = 'eval', method: Optional[str] = None):
  """Per-example maps of an image model: (example_index [N], maps [N, H, W, C] float16)."""
  directory = os.path.join(_existing_split_dir(artifact_or_uri, split), MAPS_DIR)
  pattern = f'{method}-*.npz' if method else '*.npz'
  indices, maps = [], []
  for path in sorted(tf.io.gfile.glob(os.path.join(directory, pattern))):
    with tf.io.gfile.GFile(path, 'rb') as f:
      data = np.load(io.BytesIO(f.read()), allow_pickle=False)   # maps are plain arrays
      indices.append(data['example_index'])
      maps.append(data['maps'])
  if not indices:
    raise FileNotFoundError(f'No maps{" for " + method if method else ""} under {directory}.')
  index = np.concatenate(indices)
  order = np.argsort(index, kind='stable')
  return index[order], np.concatenate(maps)[order]


def write_mean_maps(split_directory: str, mean_maps: Dict[str, np.ndarray]) -> None:
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **mean_maps)
  with tf.io.gfile.GFile(os.path.join(split_directory, MEAN_MAPS_FILE), 'wb') as f:
    f.write(buffer.getvalue())


def load_mean_maps(artifact_or_uri, split: str = 'eval') -> Dict[str, np.ndarray]:
  path = os.path.join(_existing_split_dir(artifact_or_uri, split), MEAN_MAPS_FILE)
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = np.load(io.BytesIO(f.read()), allow_pickle=False)   # maps are plain arrays
    return {key: data[key] for key in data.files}


# Per-example table columns before the feature columns, with their Arrow types.
PER_EXAMPLE_META_COLUMNS = (
    ('example_index', 'int64'), ('method', 'string'), ('target', 'int64'),
    ('output_kind', 'string'), ('value_kind', 'string'), ('prediction', 'float64'),
    ('baseline_prediction', 'float64'), ('completeness_error', 'float64'),
    ('relative_completeness_error', 'float64'))
# Image models only: where each example's map is (shard file under maps/, row in it).
PER_EXAMPLE_MAP_COLUMNS = (('map_file', 'string'), ('map_row', 'int64'))
# Names a feature column may not take; the per-example table's own columns.
PER_EXAMPLE_META_NAMES = frozenset(name for name, _ in PER_EXAMPLE_META_COLUMNS)
PER_EXAMPLE_MAP_NAMES = frozenset(name for name, _ in PER_EXAMPLE_MAP_COLUMNS)
# Rows per Parquet row group: readers stream one group at a time, so this bounds
# their memory; writers gather this many rows before writing a group.
PER_EXAMPLE_ROW_GROUP_ROWS = 16384


def per_example_schema(feature_names: Sequence[str], image: bool = False):
  """Arrow schema of the per-example table: metadata columns, one float64 per feature."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  columns = list(PER_EXAMPLE_META_COLUMNS) + [(name, 'float64') for name in feature_names]
  if image:
    columns += list(PER_EXAMPLE_MAP_COLUMNS)
  return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in columns])


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
  path = os.path.join(_existing_split_dir(artifact_or_uri, split), PER_EXAMPLE_DIR)
  for name in sorted(tf.io.gfile.glob(os.path.join(path, '*.parquet'))):
    with _SeekableGFile(name) as raw:
      parquet = pq.ParquetFile(raw)
      for group in range(parquet.num_row_groups):
        yield parquet.read_row_group(group).to_pandas()


def load_summary(artifact_or_uri, split: str = 'eval') -> Dict[str, Any]:
  path = os.path.join(_existing_split_dir(artifact_or_uri, split), SUMMARY_FILE)
  return read_json(path)


def load_reference(artifact_or_uri):
  from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(os.path.join(_uri_of(artifact_or_uri), REFERENCE_FILE)) as f:
    return ReferenceStats.from_json(f.read())


def read_json(path: str) -> Any:
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_json(path: str, value: Any) -> None:
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(json.dumps(value, indent=1, sort_keys=True, default=_json_default))


def _json_default(value):
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, bytes):
    return value.decode('utf-8', 'replace')
  raise TypeError(f'Not JSON serialisable: {type(value).__name__}')


def slice_key_to_tuple(slice_key: Sequence[Sequence[Any]]):
  return tuple((str(name), value) for name, value in slice_key)


def slice_name(slice_key) -> str:
  """'Overall' or 'island=Biscoe' (crossed: 'island=Biscoe&sex=male')."""
  if not slice_key:
    return 'Overall'
  return '&'.join(f'{k}={v}' for k, v in slice_key)


def write_tfma_attributions(split_directory: str, slices: Sequence[Dict[str, Any]],
                            feature_names: Sequence[str]) -> str:
  """Writes AttributionsForSlice protos readable by tfma.load_attributions."""
  from tensorflow_model_analysis.metrics import metric_types  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer  # pylint: disable=g-import-not-at-top
  path = os.path.join(split_directory, f'{TFMA_ATTRIBUTIONS_PREFIX}-00000-of-00001.tfrecord')
  with tf.io.TFRecordWriter(path) as records:
    for entry in slices:
      by_key = {}
      for method, stats in sorted(entry['methods'].items()):
        count = np.asarray(stats['count'], np.float64)
        total = np.asarray(stats['sum'], np.float64)
        total_abs = np.asarray(stats['sum_abs'], np.float64)
        # A feature the method could not attribute (count 0) is left out of every
        # statistic, totals included, rather than shown as 0.
        none = count == 0
        values = {
            'total_attributions': np.where(none, np.nan, total),
            'total_absolute_attributions': np.where(none, np.nan, total_abs),
            'mean_attributions': np.divide(total, count, out=np.full_like(total, np.nan),
                                           where=count > 0),
            'mean_absolute_attributions': np.divide(total_abs, count,
                                                    out=np.full_like(total, np.nan),
                                                    where=count > 0),
        }
        for statistic in TFMA_STATISTICS:
          key = metric_types.AttributionsKey(name=tfma_metric_name(method, statistic))
          by_key[key] = {name: float(v) for name, v in zip(feature_names, values[statistic])
                         if not np.isnan(v)}
      proto = writer.convert_slice_attributions_to_proto(
          (slice_key_to_tuple(entry['slice_key']), by_key))
      records.write(proto.SerializeToString())
  return path


def write_tfma_eval_config(split_directory: str, slicing_specs: Sequence[Sequence[str]],
                           data_location: str, model_location: str) -> str:
  """An EvalRun next to the attributions so tfma.load_eval_result(dir) works."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.proto import config_pb2  # pylint: disable=g-import-not-at-top
  eval_config = config_pb2.EvalConfig(
      model_specs=[config_pb2.ModelSpec(name='')],
      slicing_specs=[config_pb2.SlicingSpec(feature_keys=list(spec)) for spec in slicing_specs])
  run = config_pb2.EvalRun(eval_config=eval_config, version=tfma.version.VERSION,
                           data_location=data_location, file_format='tfrecords',
                           model_locations={'': model_location})
  path = os.path.join(split_directory, EVAL_CONFIG_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(json_format.MessageToJson(run))
  return path


def global_importance(summary: Dict[str, Any], method: str,
                      slice_key: Union[str, Sequence] = 'Overall') -> Dict[str, float]:
  """Mean |attribution| per feature for a method and slice, from summary.json."""
  name = slice_key if isinstance(slice_key, str) else slice_name(slice_key)
  for entry in summary['slices']:
    if entry['slice'] == name:
      return dict(entry['methods'][method]['mean_absolute_attribution'])
  raise KeyError(f'Slice {name!r} not in summary; slices: {[e["slice"] for e in summary["slices"]]}.')


# -- ExplanationValidation artifact ------------------------------------------------
#   <uri>/validation.json   {'blessed', 'checks': [CheckResult...], 'inputs', 'config'}
#   <uri>/report.html       the same as a self-contained page

VALIDATION_FILE = 'validation.json'
VALIDATION_REPORT_FILE = 'report.html'


def load_validation(artifact_or_uri) -> Dict[str, Any]:
  return read_json(os.path.join(_uri_of(artifact_or_uri), VALIDATION_FILE))


class OutputWriteError(OSError):
  """The output storage refused our writes (full, read-only, no permission)."""


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)
_STORAGE_MESSAGES = ('No space left on device', 'Read-only file system', 'Permission denied',
                     'Disk quota exceeded')


def as_output_write_error(error: BaseException, uri: str) -> Optional[OutputWriteError]:
  """An OutputWriteError naming `uri` if `error` or one of its causes is storage refusing writes.

  Beam and TensorFlow wrap the OSError of a failed write in their own errors,
  so the cause chain and messages are searched.
  """
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno in _STORAGE_ERRNOS:
      reason = os.strerror(seen.errno)
      break
    reason = next((m for m in _STORAGE_MESSAGES if m in str(seen)), None)
    if reason:
      break
    seen = seen.__cause__ or seen.__context__
  else:
    return None
  return OutputWriteError(f'Cannot write the output to {uri}: {reason}. Nothing was published; '
                          'free space or make the pipeline root writable and re-run.')


def write_validation(uri: str, report: Dict[str, Any]) -> None:
  tf.io.gfile.makedirs(uri)   # orchestrators differ in whether they create output folders
  write_json(os.path.join(uri, VALIDATION_FILE), report)
  with tf.io.gfile.GFile(os.path.join(uri, VALIDATION_REPORT_FILE), 'w') as f:
    f.write(validation_html(report))


def validation_html(report: Dict[str, Any]) -> str:
  """A self-contained page: no scripts, fonts or links; every data string escaped."""
  from html import escape  # pylint: disable=g-import-not-at-top

  def cell(value):
    if value is None:
      return '—'
    if isinstance(value, float):
      return escape(f'{value:.4g}')
    return escape(str(value))

  verdict = 'BLESSED' if report['blessed'] else 'NOT BLESSED'
  colour = '#1b7f3b' if report['blessed'] else '#b3261e'
  rows = []
  for result in report['checks']:
    status = 'pass' if result['passed'] else 'FAIL'
    rows.append(
        f'<tr class="{status.lower()}"><td>{status}</td><td>{cell(result["check"])}</td>'
        f'<td>{cell(result["slice"])}</td><td>{cell(result["method"])}</td>'
        f'<td>{cell(result["feature"])}</td><td>{cell(result["value"])}</td>'
        f'<td>{cell(result["comparison"])} {cell(result["threshold"])}</td>'
        f'<td>{cell(result["message"])}</td></tr>')
  inputs = ''.join(f'<li>{escape(str(k))}: {escape(str(v))}</li>'
                   for k, v in sorted(report.get('inputs', {}).items()))
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Explanation validation: {verdict}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
h1 {{ color: {colour}; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.fail td {{ background: #fde7e9; }}
tr.pass td:first-child {{ color: #1b7f3b; }}
</style></head>
<body><h1>Explanation validation: {verdict}</h1>
<p>{sum(1 for r in report['checks'] if r['passed'])} of {len(report['checks'])} checks passed.</p>
<ul>{inputs}</ul>
<table><tr><th>result</th><th>check</th><th>slice</th><th>method</th><th>feature</th>
<th>value</th><th>threshold</th><th>what</th></tr>
{''.join(rows)}
</table></body></html>
"""
