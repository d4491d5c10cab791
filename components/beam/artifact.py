"""WriteAttributions: the Beam pipeline that writes a whole Attributions artifact.

    reference split --ReadExamples--ComputeReferenceStats--> reference.json
    each split      --ReadIndexedExamples--AttributeBatchFn--> per_example/*.parquet, maps/
                      statistics, error quantiles, skipped rows, engine seconds, word totals
                    --WriteSplitResults--> summary.json, attributions-*.tfrecord (TFMA),
                      eval_config.json, mean_maps.npz, token_summary.parquet
    config.json     the AttributionConfig as the user passed it

Everything goes under one output folder (the executor's staging folder).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Tuple

import apache_beam as beam

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import statistics as slice_statistics
from tfx_explain.artifacts import summary as summary_lib
from tfx_explain.artifacts import tables
from tfx_explain.artifacts import tfma
from tfx_explain.beam.attribution import AttributeBatchFn, ModelSettings, concat_tables
from tfx_explain.beam.feature_spec import FeatureSpec, InputDataError
from tfx_explain.beam.reading import ReadExamples, ReadIndexedExamples
from tfx_explain.beam.reference_stats import ComputeReferenceStats
from tfx_explain.engine.text import merge_token_totals


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  files: Tuple[str, ...]
  location: str                       # the split's folder of the Examples artifact
  summary: summary_lib.SummaryPlan    # its name is summary.split


@dataclasses.dataclass(frozen=True)
class AttributionsPlan:
  """Everything the pipeline needs, validated by the executor. Picklable."""
  model: ModelSettings
  model_location: str                 # the Model artifact, for TFMA's EvalRun
  config_json: str                    # as the user passed it
  spec: FeatureSpec
  slicing_specs: Tuple[Tuple[str, ...], ...]   # Overall ([]) first
  splits: Tuple[SplitPlan, ...]
  reference_split: str
  reference_files: Tuple[str, ...]
  background_size: int
  seed: int
  batch_size: int
  max_examples_per_split: Optional[int] = None
  tf_threads_per_worker: Optional[int] = None   # see AttributionConfig


def _reference_json(stats, split: str) -> str:
  if stats is None:
    raise InputDataError(
        f'Reference split {split!r} has no usable examples (empty, or every row has NaN/inf '
        'values); baselines and the background sample need it.')
  stats.source = f'split {split}'
  return stats.to_json()


def _write_text(path: str, text: str) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text)
  return path


def write_split_results(split: SplitPlan, plan: AttributionsPlan, split_dir: str,
                        statistics, quantiles, skipped_rows: int, seconds: float,
                        token_totals=()) -> str:
  """summary.json, the TFMA files, mean maps and token summary of one split; returns the
  summary's path."""
  merged = dict(statistics)
  if not any(key == () for key, _ in merged):
    reason = f' ({skipped_rows} rows skipped for NaN/inf values)' if skipped_rows else ''
    raise InputDataError(f'Split {split.summary.split!r} has no examples to explain{reason}: '
                         f'{split.location}.')
  summary = summary_lib.build_summary(split.summary, merged, dict(quantiles), skipped_rows,
                                      seconds)
  # Checks that re-read the inputs (faithfulness) find them by example_index here.
  summary.example_files = list(split.files)
  path = summary.write(split_dir)
  tfma.write_attributions(split_dir, merged, summary.features)
  tfma.write_eval_config(split_dir, plan.slicing_specs, split.location, plan.model_location)
  mean_maps = summary_lib.mean_maps(merged)
  if mean_maps:
    tables.write_mean_maps(split_dir, mean_maps)
  if split.summary.tokens:
    tables.write_token_summary(split_dir, [
        (layout.slice_name(key), method, token, int(count), total, absolute)
        for (key, method), words in token_totals
        for token, (count, total, absolute) in words.items()])
  return path


def _write_split_results(split, plan, split_dir, statistics, quantiles, skipped_rows, seconds,
                         token_totals):
  return write_split_results(split, plan, split_dir, statistics, quantiles, sum(skipped_rows),
                             math.fsum(seconds), token_totals)


class WriteAttributions(beam.PTransform):
  """Explains the plan's splits and writes the whole artifact under `output_dir`."""

  def __init__(self, plan: AttributionsPlan, output_dir: str):
    super().__init__()
    self._plan = plan
    self._output_dir = output_dir

  def _reference(self, pipeline):
    plan = self._plan
    if plan.spec.image_shape:
      # Image baselines are per image (black, blurred, noise): no reference pass.
      return pipeline | 'NoReference' >> beam.Create([None])
    reference = (pipeline
                 | 'ReadReference' >> ReadExamples(plan.reference_files)
                 | 'ReferenceStats' >> ComputeReferenceStats(plan.spec, plan.background_size,
                                                             plan.seed, plan.tf_threads_per_worker))
    _ = (reference
         | 'ReferenceJson' >> beam.Map(_reference_json, plan.reference_split)
         | 'WriteReference' >> beam.Map(
             lambda text: _write_text(os.path.join(self._output_dir, layout.REFERENCE_FILE),
                                      text)))
    return reference

  def _split(self, pipeline, split: SplitPlan, reference):
    plan = self._plan
    name = split.summary.split
    split_dir = os.path.join(self._output_dir, layout.split_dir_name(name))
    row_schema = tables.per_example_schema(split.summary.features,
                                           image=bool(plan.spec.image_shape),
                                           standard_errors=split.summary.standard_errors,
                                           tokens=split.summary.tokens)
    results = (
        pipeline
        | f'Read[{name}]' >> ReadIndexedExamples(split.files, plan.max_examples_per_split,
                                                 plan.batch_size)
        | f'Attribute[{name}]' >> beam.ParDo(
            AttributeBatchFn(plan.model, plan.config_json, plan.spec, plan.slicing_specs,
                             row_schema, os.path.join(split_dir, layout.MAPS_DIR)),
            reference=beam.pvalue.AsSingleton(reference)).with_outputs(
                *AttributeBatchFn.OUTPUTS, main='rows'))
    # Tables of one batch each are gathered into row groups of about this many rows.
    tables_per_group = max(1, tables.PER_EXAMPLE_ROW_GROUP_ROWS // plan.batch_size)
    _ = (results.rows
         | f'GatherRows[{name}]' >> beam.BatchElements(min_batch_size=tables_per_group,
                                                       max_batch_size=tables_per_group)
         | f'RowGroup[{name}]' >> beam.Map(concat_tables)
         | f'WriteRows[{name}]' >> beam.io.WriteToParquetBatched(
             os.path.join(split_dir, layout.PER_EXAMPLE_DIR, layout.PER_EXAMPLE_PREFIX),
             row_schema, file_name_suffix='.parquet'))
    statistics = (results[AttributeBatchFn.STATISTICS]
                  | f'MergeSlices[{name}]' >> beam.CombinePerKey(slice_statistics.merge_all))
    token_totals = (results[AttributeBatchFn.TOKENS]
                    | f'MergeTokens[{name}]' >> beam.CombinePerKey(merge_token_totals))
    quantiles = (results[AttributeBatchFn.ERRORS]
                 | f'Quantiles[{name}]' >> beam.ApproximateQuantiles.PerKey(
                     num_quantiles=101, input_batched=True))
    # Skipped rows and engine seconds are a few numbers per batch: summed where
    # they are used rather than by a combine each (several Beam stages apiece).
    return (pipeline
            | f'Plan[{name}]' >> beam.Create([split])
            | f'WriteSplitResults[{name}]' >> beam.Map(
                _write_split_results, plan, split_dir,
                statistics=beam.pvalue.AsList(statistics),
                quantiles=beam.pvalue.AsList(quantiles),
                skipped_rows=beam.pvalue.AsList(results[AttributeBatchFn.SKIPPED]),
                seconds=beam.pvalue.AsList(results[AttributeBatchFn.SECONDS]),
                token_totals=beam.pvalue.AsList(token_totals)))

  def expand(self, pipeline):
    reference = self._reference(pipeline)
    _ = (pipeline
         | 'Config' >> beam.Create([self._plan.config_json])
         | 'WriteConfig' >> beam.Map(lambda text: _write_text(
             os.path.join(self._output_dir, layout.CONFIG_FILE), text)))
    return [self._split(pipeline, split, reference) for split in self._plan.splits]
