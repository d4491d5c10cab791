"""Trainer module for the penguin pipeline: a tf_keras MLP, one named Input per feature.

Float features are normalised inside the model and string features looked up
inside it, so the exported model takes raw feature values: AttributionGen can
differentiate it with respect to each raw float input.
"""

from __future__ import annotations

import os
from typing import Dict, List

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top
from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top
from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top

LABEL_KEY = 'species'
NUM_CLASSES = 3
FLOAT_FEATURES = ['bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g']
STRING_FEATURES = ['island', 'sex']
TRAIN_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64


def _dataset(file_pattern: List[str], data_accessor, schema, batch_size: int) -> tf.data.Dataset:
  return data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL_KEY),
      schema=schema).repeat()


def _adapt_stats(dataset: tf.data.Dataset, steps: int) -> Dict[str, list]:
  """Feature values from a few training batches, for normalisation and vocabularies."""
  columns: Dict[str, list] = {name: [] for name in FLOAT_FEATURES + STRING_FEATURES}
  for features, _ in dataset.take(steps):
    for name in columns:
      columns[name].append(tf.reshape(features[name], [-1]))
  return {name: tf.concat(values, axis=0) for name, values in columns.items()}


def build_model(stats: Dict[str, tf.Tensor]) -> tf_keras.Model:
  inputs, encoded = {}, []
  for name in FLOAT_FEATURES:
    inputs[name] = tf_keras.Input(shape=(1,), name=name, dtype=tf.float32)
    norm = tf_keras.layers.Normalization(axis=None, name=f'{name}_norm')
    norm.adapt(stats[name])
    encoded.append(norm(inputs[name]))
  for name in STRING_FEATURES:
    inputs[name] = tf_keras.Input(shape=(1,), name=name, dtype=tf.string)
    vocabulary = sorted(set(v.decode() for v in stats[name].numpy().tolist()))
    lookup = tf_keras.layers.StringLookup(vocabulary=vocabulary, output_mode='one_hot',
                                          name=f'{name}_lookup')
    encoded.append(lookup(inputs[name]))
  x = tf_keras.layers.concatenate(encoded)
  for units in (16, 16):
    x = tf_keras.layers.Dense(units, activation='relu')(x)
  outputs = tf_keras.layers.Dense(NUM_CLASSES, activation='softmax', name='probabilities')(x)
  model = tf_keras.Model(inputs=inputs, outputs=outputs)
  model.compile(optimizer=tf_keras.optimizers.Adam(1e-2),
                loss='sparse_categorical_crossentropy',
                metrics=[tf_keras.metrics.SparseCategoricalAccuracy()])
  return model


def _serving_signature(model: tf_keras.Model, schema):
  """serving_default: serialized tf.Examples in, class probabilities out."""
  feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  feature_spec.pop(LABEL_KEY, None)

  @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
  def serve_tf_examples_fn(serialized_examples):
    parsed = tf.io.parse_example(serialized_examples, feature_spec)
    return {'outputs': model({name: parsed[name] for name in model.input_names})}

  return serve_tf_examples_fn


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  tf_keras.utils.set_random_seed(42)
  schema = tfx.utils.parse_pbtxt_file(fn_args.schema_file, _schema_proto())
  train = _dataset(fn_args.train_files, fn_args.data_accessor, schema, TRAIN_BATCH_SIZE)
  evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, schema, EVAL_BATCH_SIZE)
  model = build_model(_adapt_stats(train, steps=8))
  model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
            validation_steps=fn_args.eval_steps, verbose=2)
  model.save(fn_args.serving_model_dir, save_format='tf',
             signatures={'serving_default': _serving_signature(model, schema)})


def _schema_proto():
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  return schema_pb2.Schema()
