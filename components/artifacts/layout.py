"""Where everything of an Attributions artifact lives, in one place.

    <uri>/config.json                         the AttributionConfig the user passed
    <uri>/report.html                         self-contained page: importances, completeness, slices
    <uri>/reference.json                      baselines and background sample (ReferenceStats)
    <uri>/tensorboard/<split>/                TensorBoard event files
    <uri>/Split-<name>/per_example/*.parquet  one row per (example, method)
    <uri>/Split-<name>/attributions-*.tfrecord  TFMA AttributionsForSlice per slice
    <uri>/Split-<name>/eval_config.json       TFMA EvalRun, so tfma.load_eval_result works
    <uri>/Split-<name>/summary.json           global importances, completeness, counts, speed
  image models also:
    <uri>/Split-<name>/maps/<method>-<first index>.npz   example_index, maps
    <uri>/Split-<name>/mean_maps.npz          '<method>|<slice>' -> mean display map [H, W]
    <uri>/Split-<name>/gallery/<method>.png   overlays of the first examples
  text models (token methods) also:
    <uri>/Split-<name>/token_summary.parquet  per (slice, method, word): count, mean and mean |score|
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Sequence

import numpy as np
import tensorflow as tf

# ML Metadata type names of our artifacts (tfx_explain.types declares the classes).
ATTRIBUTIONS_TYPE_NAME = 'tfx_explain.Attributions'
VALIDATION_TYPE_NAME = 'tfx_explain.ExplanationValidation'

CONFIG_FILE = 'config.json'
REPORT_FILE = 'report.html'
REFERENCE_FILE = 'reference.json'
TENSORBOARD_DIR = 'tensorboard'
PER_EXAMPLE_DIR = 'per_example'
PER_EXAMPLE_PREFIX = 'part'
EVAL_CONFIG_FILE = 'eval_config.json'
SUMMARY_FILE = 'summary.json'
MAPS_DIR = 'maps'
MEAN_MAPS_FILE = 'mean_maps.npz'
GALLERY_DIR = 'gallery'
TOKEN_SUMMARY_FILE = 'token_summary.parquet'
SPLIT_PREFIX = 'Split-'


def split_dir_name(split: str) -> str:
  return f'{SPLIT_PREFIX}{split}'


def split_uri(uri: str, split: str) -> str:
  return os.path.join(uri, split_dir_name(split))


def files_in(directory: str) -> List[str]:
  """The files (not folders) of a directory, sorted: an Examples split's data files."""
  return sorted(f for f in tf.io.gfile.glob(os.path.join(directory, '*'))
                if not tf.io.gfile.isdir(f))


def uri_of(artifact_or_uri) -> str:
  if isinstance(artifact_or_uri, str):
    return artifact_or_uri
  uri = getattr(artifact_or_uri, 'uri', None)
  if uri is None:
    raise TypeError(f'Expected an artifact or a URI, got {artifact_or_uri!r}.')
  return uri


def available_splits(artifact_or_uri) -> List[str]:
  uri = uri_of(artifact_or_uri)
  if not tf.io.gfile.isdir(uri):
    return []
  return sorted(name[len(SPLIT_PREFIX):].rstrip('/') for name in tf.io.gfile.listdir(uri)
                if name.startswith(SPLIT_PREFIX))


def existing_split_dir(artifact_or_uri, split: str) -> str:
  uri = uri_of(artifact_or_uri)
  path = split_uri(uri, split)
  if not tf.io.gfile.isdir(path):
    raise FileNotFoundError(f'No split {split!r} in attributions at {uri}; '
                            f'available splits: {available_splits(uri)}.')
  return path


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


def slice_name(slice_key: Sequence[Sequence[Any]]) -> str:
  """'Overall' or 'island=Biscoe' (crossed: 'island=Biscoe&sex=male')."""
  if not slice_key:
    return 'Overall'
  return '&'.join(f'{k}={v}' for k, v in slice_key)


def load_attribution_config(artifact_or_uri) -> dict:
  """config.json: the AttributionConfig the run was given, as JSON."""
  return read_json(os.path.join(uri_of(artifact_or_uri), CONFIG_FILE))
