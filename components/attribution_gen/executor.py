"""AttributionGen executor: validates inputs, runs the Beam pipeline, publishes.

Everything is written under `<output>/.staging` first and moved into place only
after the pipeline and the summary succeed, so a failed run leaves nothing
that looks like output (and TFX publishes no artifact for it).
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any, Dict, List

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_explain import artifact_io
from tfx_explain import reports
from tfx_explain.beam import attribution_transforms as transforms
from tfx_explain.config import AttributionConfig
from tfx_explain.types import Attributions
from tfx_explain.engine.base import ConfigError
from tfx_explain.attribution_gen import gallery
from tfx_explain.attribution_gen import tensorboard
from tfx_explain.engine.image import region_feature_names
from tfx_explain.engine.image_model import FlatImageModel, ImageModel
from tfx_explain.engine import serving_check
from tfx_explain.engine.loading import serving_model_dir

EXAMPLES_KEY = 'examples'
MODEL_KEY = 'model'
SCHEMA_KEY = 'schema'
TRANSFORM_GRAPH_KEY = 'transform_graph'
ATTRIBUTIONS_KEY = 'attributions'
CONFIG_KEY = 'config'

_SKIPPED = '__skipped_non_finite__'


def _split_files(examples: types.Artifact, split: str) -> List[str]:
  return artifact_io.files_in(artifact_utils.get_split_uri([examples], split))


def _load_schema(schema_artifacts):
  if not schema_artifacts:
    return None
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  uri = artifact_utils.get_single_uri(schema_artifacts)
  path = io_utils.get_only_uri_in_dir(uri)
  return io_utils.parse_pbtxt_file(path, schema_pb2.Schema())


def runs_in_this_environment(beam_pipeline_args: List[str]) -> bool:
  """Whether Beam runs here with the DirectRunner (the default), whose workers share this Python."""
  from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions  # pylint: disable=g-import-not-at-top
  runner = PipelineOptions(list(beam_pipeline_args)).view_as(StandardOptions).runner
  if runner is None:
    return True
  name = runner if isinstance(runner, str) else type(runner).__name__
  return name.rsplit('.', 1)[-1].lower() in ('directrunner', 'direct')


class Executor(base_beam_executor.BaseBeamExecutor):
  """Computes feature attributions for the configured splits."""

  def __init__(self, context=None):
    args = list(getattr(context, 'beam_pipeline_args', None) or [])
    if args and runs_in_this_environment(args):
      # Given Beam arguments, TFX copies its own installed source into an sdist
      # for remote workers to install: seconds per run, of no use when the
      # workers run in this environment.
      local = copy.copy(context)
      local.beam_pipeline_args = []
      super().__init__(local)
      self._beam_pipeline_args = args
    else:
      super().__init__(context)

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config = AttributionConfig.from_json(exec_properties[CONFIG_KEY])
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    model_artifact = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    output = artifact_utils.get_single_instance(output_dict[ATTRIBUTIONS_KEY])
    schema = _load_schema(input_dict.get(SCHEMA_KEY))

    available = artifact_utils.decode_split_names(examples.split_names)
    for split in list(config.splits) + [config.baseline_split]:
      if split not in available:
        raise ConfigError(f"Split {split!r} does not exist in the examples ({examples.uri}); "
                          f'available splits: {available}.')
    split_files = {}
    for split in set(list(config.splits) + [config.baseline_split]):
      files = _split_files(examples, split)
      if not files:
        raise transforms.InputDataError(
            f'Split {split!r} has no files under {artifact_utils.get_split_uri([examples], split)}.')
      split_files[split] = files

    transform_graph = (artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY])
                       if input_dict.get(TRANSFORM_GRAPH_KEY) else None)
    model = config.load_model(model_artifact.uri, transform_graph, shared=True)
    if isinstance(model, FlatImageModel):
      # A flat pixel vector: serving is compared on the model as it is.
      self._check_served_function(config, model.flat, model_artifact.uri,
                                  self._feature_spec(config, model.flat, schema),
                                  split_files[config.splits[0]])
    is_image = isinstance(model, ImageModel)
    wrong = [m.label for m in config.methods if bool(m.image_method) != is_image]
    if wrong:
      kind = 'an image model (one rank-4 input)' if is_image else 'a tabular model'
      use = ('GradCam, ImageIntegratedGradients, ImageSmoothGrad, ImageGradientTimesInput'
             if is_image else 'IntegratedGradients, KernelShap, ...')
      raise ConfigError(f'Method(s) {wrong} do not apply to {kind}; use {use}.')
    if is_image:
      spec = self._image_feature_spec(config, model, schema)
      feature_names = region_feature_names(model.input_name)
    else:
      spec = self._feature_spec(config, model, schema)
      feature_names = list(model.input_names)
      self._check_served_function(config, model, model_artifact.uri, spec,
                                  split_files[config.splits[0]])

    output_uri = output.uri
    staging = os.path.join(output_uri, artifact_io.STAGING_DIR)
    try:
      if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
      tf.io.gfile.makedirs(staging)
    except Exception as e:  # pylint: disable=broad-except
      raise artifact_io.as_output_write_error(e, output_uri) or e
    try:
      timings = self._run_pipeline(config, model_artifact.uri, spec, feature_names,
                                   split_files, staging, transform_graph)
      summaries = {}
      for split in config.splits:
        summaries[split] = self._finish_split(config, model, feature_names, split, staging,
                                              examples.uri, model_artifact.uri, timings)
        if is_image:
          gallery.write_gallery(os.path.join(staging, artifact_io.split_dir_name(split)),
                                split_files[split], spec, [m.label for m in config.methods],
                                summaries[split])
      artifact_io.write_json(os.path.join(staging, artifact_io.CONFIG_FILE),
                             json.loads(config.to_json()))
      self._write_report(staging, summaries)
      tensorboard.write_summaries(staging, summaries)
      self._publish(staging, output_uri)
    except Exception as e:  # pylint: disable=broad-except
      if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
      storage_error = artifact_io.as_output_write_error(e, output_uri)
      if storage_error:
        raise storage_error from e
      raise
    self._set_properties(output, config, summaries, model_artifact, transform_graph)

  # -- validation ----------------------------------------------------------------
  @staticmethod
  def _feature_spec(config: AttributionConfig, model, schema) -> transforms.FeatureSpec:
    for name in model.input_names:
      if name in artifact_io.PER_EXAMPLE_META_NAMES:
        raise ConfigError(f'Model input {name!r} clashes with a column of the attributions '
                          'table; rename the input.')
    slice_features = sorted({f for spec in config.slicing_specs for f in spec})
    if any(m.requires_labels for m in config.methods) and not config.label_key:
      names = [type(m).__name__ for m in config.methods if m.requires_labels]
      raise ConfigError(f'{names} need labels: set AttributionConfig.label_key.')
    if schema is not None:
      in_schema = {f.name for f in schema.feature}
      missing = [n for n in model.model_inputs if n not in in_schema]
      if missing:
        raise ConfigError(f'Model input(s) {missing} are not features of the schema '
                          f'(schema features: {sorted(in_schema)}).{_transform_hint(model)}')
      if config.label_key and config.label_key not in in_schema:
        raise ConfigError(f'label_key {config.label_key!r} is not a feature of the schema '
                          f'(schema features: {sorted(in_schema)}).')
      bad_slices = [f for f in slice_features if f not in in_schema]
      if bad_slices:
        raise ConfigError(f'Slicing feature(s) {bad_slices} are not features of the schema '
                          f'(schema features: {sorted(in_schema)}).')
    return transforms.FeatureSpec(
        model_inputs=tuple(model.input_names),
        input_dtypes=tuple(model.input_dtypes[n].name for n in model.input_names),
        label_key=config.label_key, slice_features=tuple(slice_features),
        serialized_schema=schema.SerializeToString() if schema is not None else None,
        vectors=tuple(sorted(model.vector_inputs.items())))

  @staticmethod
  def _image_feature_spec(config, model, schema) -> transforms.FeatureSpec:
    name = model.input_name
    if schema is not None and name not in {f.name for f in schema.feature}:
      raise ConfigError(f'Image input {name!r} is not a feature of the schema.')
    slice_features = sorted({f for spec in config.slicing_specs for f in spec})
    return transforms.FeatureSpec(
        model_inputs=(name,), input_dtypes=('float32',), label_key=config.label_key,
        slice_features=tuple(slice_features),
        serialized_schema=schema.SerializeToString() if schema is not None else None,
        image_shape=tuple(model.image_shape))

  @staticmethod
  def _check_served_function(config, model, model_uri, spec, files):
    """Fails unless the explained function equals serving_default on a sample of examples."""
    if config.attribution_space == 'transformed':
      # Transformed examples are not what serving_default parses: nothing to compare.
      logging.info('attribution_space=transformed: explaining the model on its own inputs, '
                   'without the serving comparison.')
      return
    records, record_files = transforms.first_records(files, serving_check.SAMPLE_SIZE)
    if not records:
      return   # an empty split is reported by the pipeline, with its name
    try:
      features, _, _ = transforms.ExampleDecoder(spec).decode(records, record_files,
                                                              need_label=False)
    except transforms.InputDataError as e:
      if 'is missing from the examples' not in str(e):
        raise
      raise transforms.InputDataError(f'{e}{_transform_hint(model)}') from e
    keep = transforms.finite_rows(features, spec.float_inputs)
    rows = np.nonzero(keep)[0]
    features = {k: v[rows] for k, v in features.items()}
    loaded = getattr(model, '_loaded', None)
    if loaded is None:
      loaded = tf.saved_model.load(serving_model_dir(model_uri))
    agreement = serving_check.check_serving_agreement(
        model, loaded, serving_model_dir(model_uri), [records[i] for i in rows], features,
        output_key=config.output_key)
    if agreement is not None:
      logging.info('Explained function matches %r output %r on %d examples (max gap %.2g): %s',
                   agreement.signature, agreement.output, agreement.examples,
                   agreement.max_gap, agreement.path_used)

  # -- pipeline --------------------------------------------------------------------
  def _run_pipeline(self, config, model_uri, spec, feature_names, split_files, staging,
                    transform_graph=None):
    settings = transforms.ModelSettings(model_uri, transform_graph)
    if [] not in config.slicing_specs:
      config.slicing_specs = [[]] + list(config.slicing_specs)
    config_json = config.to_json()
    schema = artifact_io.per_example_schema(feature_names, image=bool(spec.image_shape))
    # Tables of one batch each are gathered into row groups of about this many.
    tables_per_group = max(1, artifact_io.PER_EXAMPLE_ROW_GROUP_ROWS // config.batch_size)
    start = time.time()
    pipeline = self._make_beam_pipeline()
    if spec.image_shape:
      # Image baselines are per image (black, blurred, noise): no reference pass.
      reference = pipeline | 'NoReference' >> beam.Create([None])
    else:
      reference = (
          pipeline
          | 'ReadReference' >> transforms.ReadIndexedExamples(split_files[config.baseline_split])
          | 'ReferenceStats' >> transforms.ComputeReferenceStats(
              spec, config.effective_background_size, config.seed))
      _ = (reference
           | 'ReferenceJson' >> beam.Map(_reference_json, config.baseline_split)
           | 'WriteReference' >> beam.io.WriteToText(
               os.path.join(staging, artifact_io.REFERENCE_FILE), shard_name_template=''))
    for split in config.splits:
      split_dir = os.path.join(staging, artifact_io.split_dir_name(split))
      results = (
          pipeline
          | f'Read[{split}]' >> transforms.ReadIndexedExamples(
              split_files[split], config.max_examples_per_split, config.batch_size)
          | f'Attribute[{split}]' >> beam.ParDo(
              transforms.AttributeBatchFn(settings, config_json, spec, schema,
                                          os.path.join(split_dir, artifact_io.MAPS_DIR)),
              reference=beam.pvalue.AsSingleton(reference)).with_outputs(
                  transforms.AttributeBatchFn.PARTIALS, transforms.AttributeBatchFn.ERRORS,
                  main='rows'))
      _ = (results.rows
           | f'GatherRows[{split}]' >> beam.BatchElements(
               min_batch_size=tables_per_group, max_batch_size=tables_per_group)
           | f'RowGroup[{split}]' >> beam.Map(transforms.concat_tables)
           | f'WriteRows[{split}]' >> beam.io.WriteToParquetBatched(
               os.path.join(split_dir, artifact_io.PER_EXAMPLE_DIR,
                            artifact_io.PER_EXAMPLE_PREFIX),
               schema, file_name_suffix='.parquet'))
      partials = results[transforms.AttributeBatchFn.PARTIALS]
      skipped = (partials
                 | f'Skipped[{split}]' >> beam.Filter(lambda kv: kv[0] == _SKIPPED)
                 | f'SkippedCount[{split}]' >> beam.CombinePerKey(sum))
      slices = (partials
                | f'SliceParts[{split}]' >> beam.Filter(lambda kv: kv[0] != _SKIPPED)
                | f'MergeSlices[{split}]' >> beam.CombinePerKey(transforms.merge_partials)
                | f'SliceJson[{split}]' >> beam.Map(transforms.partials_to_json))
      quantiles = (
          results[transforms.AttributeBatchFn.ERRORS]
          | f'Quantiles[{split}]' >> beam.ApproximateQuantiles.PerKey(
              num_quantiles=101, input_batched=True)
          | f'QuantileJson[{split}]' >> beam.Map(
              lambda kv: {'method': kv[0][0], 'slice': kv[0][1], 'kind': kv[0][2],
                          'quantiles': kv[1]}))
      _ = ((slices, quantiles,
            skipped | f'SkippedJson[{split}]' >> beam.Map(lambda kv: {'skipped': kv[1]}))
           | f'Flatten[{split}]' >> beam.Flatten()
           | f'Encode[{split}]' >> beam.Map(json.dumps, sort_keys=True)
           | f'WriteStats[{split}]' >> beam.io.WriteToText(
               os.path.join(split_dir, '_stats'), file_name_suffix='.jsonl'))
    result = pipeline.run()
    result.wait_until_finish()
    timings = {'pipeline_seconds': time.time() - start}
    try:
      counters = result.metrics().query(beam.metrics.MetricsFilter().with_name(
          transforms.AttributeBatchFn.COMPUTE_MILLIS))['counters']
      for counter in counters:
        split = counter.key.step.split('[')[-1].rstrip(']')
        timings[f'compute_seconds/{split}'] = counter.committed / 1000.0
    except (NotImplementedError, KeyError, AttributeError):
      pass  # Some runners do not report committed metrics.
    return timings

  # -- summary ------------------------------------------------------------------------
  def _finish_split(self, config, model, names, split, staging, examples_uri, model_uri,
                    timings):
    split_dir = os.path.join(staging, artifact_io.split_dir_name(split))
    stats_files = tf.io.gfile.glob(os.path.join(split_dir, '_stats*'))
    slice_entries: Dict[str, Dict[str, Any]] = {}
    quantiles: Dict[Any, Dict[str, Dict[str, float]]] = {}
    skipped = 0
    for path in stats_files:
      with tf.io.gfile.GFile(path) as f:
        for line in f:
          item = json.loads(line)
          if 'skipped' in item:
            skipped += int(item['skipped'])
          elif 'quantiles' in item:
            q = item['quantiles']
            quantiles.setdefault((item['slice'], item['method']), {})[
                f"{item['kind']}_completeness_error"] = {'p50': q[50], 'p95': q[95], 'max': q[100]}
          else:
            name = artifact_io.slice_name(item['slice_key'])
            entry = slice_entries.setdefault(
                name, {'slice': name, 'slice_key': item['slice_key'], 'methods': {}})
            entry['methods'][item['method']] = item
      tf.io.gfile.remove(path)
    overall = slice_entries.get('Overall')
    if overall is None:
      reason = f' ({skipped} rows skipped for NaN/inf values)' if skipped else ''
      raise transforms.InputDataError(
          f'Split {split!r} has no examples to explain{reason}: '
          f'{os.path.join(examples_uri, artifact_io.split_dir_name(split))}.')
    labels = [m.label for m in config.methods]
    mean_maps = {}
    num_examples = next(iter(overall['methods'].values()))['examples']
    ordered = sorted(slice_entries.values(), key=lambda e: (len(e['slice_key']), e['slice']))
    summary_slices = []
    for entry in ordered:
      methods = {}
      for label in labels:
        item = entry['methods'].get(label)
        if item is None:
          continue
        count = np.asarray(item['count'], np.float64)
        mean_abs = np.divide(item['sum_abs'], count, out=np.full(len(names), np.nan),
                             where=count > 0)
        mean = np.divide(item['sum'], count, out=np.full(len(names), np.nan), where=count > 0)
        methods[label] = {
            'mean_absolute_attribution': _finite_dict(names, mean_abs),
            'mean_attribution': _finite_dict(names, mean),
            'ranking': [names[i] for i in np.argsort(-np.nan_to_num(mean_abs, nan=-1.0))
                        if not np.isnan(mean_abs[i])],
            'mean_completeness_error': item['error_sum'] / item['examples'],
            'mean_relative_completeness_error': item['relative_error_sum'] / item['examples'],
            'mean_prediction': item['prediction_sum'] / item['examples'],
        }
        if 'group_sum' in item:
          groups = sorted(model.vector_inputs)   # the order FeatureSpec.vectors has
          count = np.asarray(item['group_count'], np.float64)
          methods[label]['feature_groups'] = {
              name: {'mean_attribution': item['group_sum'][g] / count[g],
                     'mean_absolute_attribution': item['group_sum_abs'][g] / count[g]}
              for g, name in enumerate(groups) if count[g] > 0}
        methods[label].update(quantiles.get((entry['slice'], label), {}))
        if 'map_mean' in item:
          mean_maps[f"{label}|{entry['slice']}"] = np.asarray(item['map_mean'], np.float32)
      summary_slices.append({'slice': entry['slice'], 'slice_key': entry['slice_key'],
                             'examples': next(iter(entry['methods'].values()))['examples'],
                             'methods': methods})
    method_info = {}
    for method in config.methods:
      info = {'config': method.to_json_dict(),
              'skipped_features': (method.skipped_features(model)
                                   if hasattr(model, 'other_features') else []),
              'value_kind': method.value_kind}
      info.update(quantiles.get(('Overall', method.label), {}))
      method_info[method.label] = info
    seconds = timings['pipeline_seconds']
    compute_seconds = timings.get(f'compute_seconds/{split}')
    summary = {
        'split': split, 'examples': int(num_examples), 'skipped_non_finite_rows': skipped,
        'features': names, 'output_kind': model.output_kind,
        'feature_groups': {name: list(elements) for name, elements in
                           sorted(getattr(model, 'elements', {}).items())},
        'target': config.target, 'methods': method_info, 'slices': summary_slices,
        'wall_seconds': seconds,
        'compute_seconds': compute_seconds,
        # Engine throughput inside the workers; end to end includes reading,
        # the reference-statistics pass, model loading and writing.
        'examples_per_second': (num_examples / compute_seconds if compute_seconds
                                else num_examples / seconds),
        'end_to_end_examples_per_second': num_examples / seconds,
        'reference_split': config.baseline_split,
        'note_on_skips': ('Rows with NaN or infinite float inputs are skipped and counted '
                          'here rather than failing the run; gate on this count with '
                          'ExplanationValidator.'),
    }
    if mean_maps:
      summary['image'] = {'shape': list(getattr(model, 'image_shape', ())),
                          'maps': artifact_io.MAPS_DIR, 'mean_maps': artifact_io.MEAN_MAPS_FILE,
                          'regions': names}
      artifact_io.write_mean_maps(split_dir, mean_maps)
    artifact_io.write_json(os.path.join(split_dir, artifact_io.SUMMARY_FILE), summary)
    artifact_io.write_tfma_attributions(split_dir, ordered, names)
    artifact_io.write_tfma_eval_config(
        split_dir, config.slicing_specs, os.path.join(examples_uri, f'Split-{split}'), model_uri)
    return summary

  @staticmethod
  def _write_report(staging: str, summaries):
    galleries = {}
    for split in summaries:
      folder = os.path.join(staging, artifact_io.split_dir_name(split), artifact_io.GALLERY_DIR)
      for path in sorted(tf.io.gfile.glob(os.path.join(folder, '*.png'))):
        with tf.io.gfile.GFile(path, 'rb') as f:
          galleries.setdefault(split, {})[os.path.basename(path)[:-4]] = f.read()
    with tf.io.gfile.GFile(os.path.join(staging, artifact_io.REPORT_FILE), 'w') as f:
      f.write(reports.attributions_report(summaries, galleries))

  @staticmethod
  def _publish(staging: str, output_uri: str):
    for name in tf.io.gfile.listdir(staging):
      name = name.rstrip('/')
      source = os.path.join(staging, name)
      target = os.path.join(output_uri, name)
      if tf.io.gfile.exists(target):
        if tf.io.gfile.isdir(target):
          tf.io.gfile.rmtree(target)
        else:
          tf.io.gfile.remove(target)
      tf.io.gfile.rename(source, target)
    tf.io.gfile.rmtree(staging)

  @staticmethod
  def _set_properties(output, config, summaries, model_artifact, transform_graph=None):
    # Which model these explain: ExplanationValidator blesses it, and the
    # baseline resolver finds the attributions of the last blessed model by it.
    output.set_string_custom_property('model_uri', model_artifact.uri)
    if transform_graph:
      # The Transform put in front of the model, so checks that reload it use the same one.
      output.set_string_custom_property(Attributions.TRANSFORM_GRAPH_PROPERTY, transform_graph)
    if model_artifact.mlmd_artifact.HasField('id'):
      output.set_int_custom_property('model_id', model_artifact.id)
    output.set_string_custom_property('split_names', json.dumps(list(config.splits)))
    output.set_string_custom_property('methods', json.dumps([m.label for m in config.methods]))
    rates = []
    for split, summary in summaries.items():
      output.set_int_custom_property(f'{split}_example_count', summary['examples'])
      output.set_int_custom_property(f'{split}_skipped_rows', summary['skipped_non_finite_rows'])
      for label, info in summary['methods'].items():
        error = info.get('absolute_completeness_error')
        if error:
          output.set_float_custom_property(f'{split}_{label}_completeness_error_p50',
                                           float(error['p50']))
          output.set_float_custom_property(f'{split}_{label}_completeness_error_p95',
                                           float(error['p95']))
      if summary['examples_per_second']:
        rates.append(summary['examples_per_second'])
    if rates:
      output.set_float_custom_property('examples_per_second', float(rates[0]))
    logging.info('AttributionGen wrote %s', output.uri)


def _transform_hint(model) -> str:
  if getattr(model, 'transform', None) is not None:
    return (' The model takes raw features through its Transform layer: give AttributionGen the '
            "raw examples (ExampleGen's output) and SchemaGen's schema, not Transform's "
            'transformed_examples.')
  return (' If the model was trained on Transform output, give AttributionGen the Transform '
          "component's transform_graph together with the raw examples (ExampleGen's output), "
          "so attributions are in raw feature space; or give it Transform's "
          'transformed_examples and post_transform_schema to explain the transformed features.')


def _finite_dict(names, values):
  return {n: float(v) for n, v in zip(names, values) if not np.isnan(v)}


def _reference_json(stats, split):
  if stats is None:
    raise transforms.InputDataError(
        f'Reference split {split!r} has no usable examples (empty, or every row has NaN/inf '
        'values); baselines and the background sample need it.')
  stats.source = f'split {split}'
  return stats.to_json()
