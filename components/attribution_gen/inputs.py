"""AttributionGen's input checks: splits, schema, methods and the served function.

Every problem is raised here, before anything is written, with what to pass instead.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
from tfx_explain.beam.decoding import ExampleDecoder, finite_rows
from tfx_explain.beam.feature_spec import FeatureSpec, InputDataError
from tfx_explain.beam.reading import first_records
from tfx_explain.config import AttributionConfig
from tfx_explain.engine import serving_check
from tfx_explain.engine.base import ConfigError
from tfx_explain.engine import method_classes
from tfx_explain.engine.image_model import ImageModel
from tfx_explain.engine.loading import serving_model_dir


def load_schema(schema_artifacts):
  if not schema_artifacts:
    return None
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  uri = artifact_utils.get_single_uri(schema_artifacts)
  return io_utils.parse_pbtxt_file(io_utils.get_only_uri_in_dir(uri), schema_pb2.Schema())


def split_files(examples: types.Artifact, config: AttributionConfig) -> Dict[str, List[str]]:
  """The data files of every split the config reads (explained splits and the reference)."""
  available = artifact_utils.decode_split_names(examples.split_names)
  wanted = list(dict.fromkeys(list(config.splits) + [config.baseline_split]))
  for split in wanted:
    if split not in available:
      raise ConfigError(f"Split {split!r} does not exist in the examples ({examples.uri}); "
                        f'available splits: {available}.')
  files = {}
  for split in wanted:
    uri = artifact_utils.get_split_uri([examples], split)
    files[split] = layout.files_in(uri)
    if not files[split]:
      raise InputDataError(f'Split {split!r} has no files under {uri}.')
  return files


def check_methods_apply(config: AttributionConfig, model) -> None:
  is_image = isinstance(model, ImageModel)
  wrong = [m.label for m in config.methods if bool(m.image_method) != is_image]
  if wrong:
    kind = 'an image model (one rank-4 input)' if is_image else 'a tabular model'
    use = ', '.join(c.__name__ for c in method_classes(image=is_image))
    raise ConfigError(f'Method(s) {wrong} do not apply to {kind}; use {use}.')
  refused: dict = {}   # reason -> methods it refuses
  for method in config.methods:
    reason = method.refusal(model)
    if reason:
      refused.setdefault(reason, []).append(method.label)
  for reason, labels in refused.items():
    raise ConfigError(f'Method(s) {labels} {reason}')


def feature_spec(config: AttributionConfig, model, schema) -> FeatureSpec:
  reserved = tables.PER_EXAMPLE_META_NAMES
  if any(m.token_method for m in config.methods):
    reserved = reserved | tables.PER_EXAMPLE_TOKEN_NAMES
  for name in model.input_names:
    if name in reserved:
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
                        f'(schema features: {sorted(in_schema)}).{transform_hint(model)}')
    if config.label_key and config.label_key not in in_schema:
      raise ConfigError(f'label_key {config.label_key!r} is not a feature of the schema '
                        f'(schema features: {sorted(in_schema)}).')
    bad_slices = [f for f in slice_features if f not in in_schema]
    if bad_slices:
      raise ConfigError(f'Slicing feature(s) {bad_slices} are not features of the schema '
                        f'(schema features: {sorted(in_schema)}).')
  return FeatureSpec(
      model_inputs=tuple(model.input_names),
      input_dtypes=tuple(model.input_dtypes[n].name for n in model.input_names),
      label_key=config.label_key, slice_features=tuple(slice_features),
      serialized_schema=schema.SerializeToString() if schema is not None else None,
      vectors=tuple(sorted(model.vector_inputs.items())))


def image_feature_spec(config, model, schema) -> FeatureSpec:
  name = model.input_name
  if schema is not None and name not in {f.name for f in schema.feature}:
    raise ConfigError(f'Image input {name!r} is not a feature of the schema.')
  slice_features = sorted({f for spec in config.slicing_specs for f in spec})
  return FeatureSpec(
      model_inputs=(name,), input_dtypes=('float32',), label_key=config.label_key,
      slice_features=tuple(slice_features),
      serialized_schema=schema.SerializeToString() if schema is not None else None,
      image_shape=tuple(model.image_shape))


def check_served_function(config, model, model_uri, spec, files):
  """Fails unless the explained function equals serving_default on a sample of examples."""
  if config.attribution_space == 'transformed':
    # Transformed examples are not what serving_default parses: nothing to compare.
    logging.info('attribution_space=transformed: explaining the model on its own inputs, '
                 'without the serving comparison.')
    return
  records, record_files = first_records(files, serving_check.SAMPLE_SIZE)
  if not records:
    return   # an empty split is reported by the pipeline, with its name
  try:
    features, _, _ = ExampleDecoder(spec).decode(records, record_files, need_label=False)
  except InputDataError as e:
    if 'is missing from the examples' not in str(e):
      raise
    raise InputDataError(f'{e}{transform_hint(model)}') from e
  keep = finite_rows(features, spec.float_inputs)
  rows = np.nonzero(keep)[0]
  features = {k: v[rows] for k, v in features.items()}
  loaded = getattr(model, '_loaded', None)
  if loaded is None:
    # A Keras model loaded from a SavedModel carries its signatures: loading
    # the SavedModel a second time for them costs about a second.
    keras_model = getattr(model, 'model', None)
    loaded = keras_model if getattr(keras_model, 'signatures', None) is not None else None
  if loaded is None:
    loaded = tf.saved_model.load(serving_model_dir(model_uri))
  agreement = serving_check.check_serving_agreement(
      model, loaded, serving_model_dir(model_uri), [records[i] for i in rows], features,
      output_key=config.output_key)
  if agreement is not None:
    logging.info('Explained function matches %r output %r on %d examples (max gap %.2g): %s',
                 agreement.signature, agreement.output, agreement.examples,
                 agreement.max_gap, agreement.path_used)


def transform_hint(model) -> str:
  if getattr(model, 'transform', None) is not None:
    return (' The model takes raw features through its Transform layer: give AttributionGen the '
            "raw examples (ExampleGen's output) and SchemaGen's schema, not Transform's "
            'transformed_examples.')
  return (' If the model was trained on Transform output, give AttributionGen the Transform '
          "component's transform_graph together with the raw examples (ExampleGen's output), "
          "so attributions are in raw feature space; or give it Transform's "
          'transformed_examples and post_transform_schema to explain the transformed features.')
