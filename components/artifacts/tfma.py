"""The TFMA files of an Attributions split: `tfma.load_attributions(<split dir>)` reads them.

Each AttributionsForSlice holds one MetricKey per (method, statistic) named
'<method>/<statistic>', statistic one of TFMA's attribution metric names
(mean_attributions, mean_absolute_attributions, total_attributions,
total_absolute_attributions) or, for sampling estimators, mean_standard_error
(the mean per-example standard error of each feature's attribution);
model_name and output_name are empty. E.g.
`result.get_attributions_for_slice(metric_name='integrated_gradients/mean_absolute_attributions')`.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow_model_analysis import constants as tfma_constants
from tensorflow_model_analysis.metrics import attributions as tfma_attributions

from tfx_explain.artifacts import layout
from tfx_explain.artifacts.statistics import SliceStatistics
from tfx_explain.artifacts.summary import SliceKey, ordered_slice_keys

# TFMA's own file prefix, so tfma.load_attributions finds the records.
ATTRIBUTIONS_PREFIX = tfma_constants.ATTRIBUTIONS_KEY
STATISTICS = (tfma_attributions.MEAN_ATTRIBUTIONS_NAME,
              tfma_attributions.MEAN_ABSOLUTE_ATTRIBUTIONS_NAME,
              tfma_attributions.TOTAL_ATTRIBUTIONS_NAME,
              tfma_attributions.TOTAL_ABSOLUTE_ATTRIBUTIONS_NAME)
MEAN_STANDARD_ERROR_NAME = 'mean_standard_error'


def metric_name(method: str, statistic: str) -> str:
  return f'{method}/{statistic}'


def _values(stats: SliceStatistics, statistic: str) -> np.ndarray:
  # A feature the method could not attribute (count 0) is left out of every
  # statistic, totals included, rather than shown as 0.
  return {tfma_attributions.MEAN_ATTRIBUTIONS_NAME: stats.mean,
          tfma_attributions.MEAN_ABSOLUTE_ATTRIBUTIONS_NAME: stats.mean_abs,
          tfma_attributions.TOTAL_ATTRIBUTIONS_NAME: stats.totals,
          tfma_attributions.TOTAL_ABSOLUTE_ATTRIBUTIONS_NAME: stats.totals_abs}[statistic]()


def write_attributions(split_directory: str,
                       statistics: Mapping[Tuple[SliceKey, str], SliceStatistics],
                       feature_names: Sequence[str]) -> str:
  """AttributionsForSlice protos, one per slice, in the order of the summary's slices."""
  from tensorflow_model_analysis.metrics import metric_types  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer  # pylint: disable=g-import-not-at-top
  path = os.path.join(split_directory, f'{ATTRIBUTIONS_PREFIX}-00000-of-00001.tfrecord')
  methods = sorted({method for _, method in statistics})
  with tf.io.TFRecordWriter(path) as records:
    for key in ordered_slice_keys(k for k, _ in statistics):
      by_key = {}
      for method in methods:
        stats = statistics.get((key, method))
        if stats is None:
          continue
        named = [(statistic, _values(stats, statistic)) for statistic in STATISTICS]
        if stats.mean_standard_error() is not None:
          named.append((MEAN_STANDARD_ERROR_NAME, stats.mean_standard_error()))
        for statistic, values in named:
          by_key[metric_types.AttributionsKey(name=metric_name(method, statistic))] = {
              name: float(v) for name, v in zip(feature_names, values) if not np.isnan(v)}
      proto = writer.convert_slice_attributions_to_proto(
          (tuple((str(k), v) for k, v in key), by_key))
      records.write(proto.SerializeToString())
  return path


def write_eval_config(split_directory: str, slicing_specs: Sequence[Sequence[str]],
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
  path = os.path.join(split_directory, layout.EVAL_CONFIG_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(json_format.MessageToJson(run))
  return path
