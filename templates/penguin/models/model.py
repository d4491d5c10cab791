"""The {{PIPELINE_NAME}} model: a tf_keras MLP over every feature in the schema.

Numeric features are normalised and string features looked up inside the
model, so the exported model takes raw values: AttributionGen differentiates
it with respect to each raw numeric input. Change the label and class count in
pipeline/configs.py; change the architecture here.
"""

import os
from typing import Dict, List, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top
from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top

from pipeline import configs  # pylint: disable=g-import-not-at-top

HIDDEN_UNITS = (16, 16)
LEARNING_RATE = 1e-2
BATCH_SIZE = 32
ADAPT_BATCHES = 8   # batches read to fit normalisation and vocabularies


def split_features(schema: schema_pb2.Schema, label_key: str) -> Tuple[List[str], List[str]]:
  """(numeric, string) feature names, label excluded."""
  numeric, strings = [], []
  for feature in schema.feature:
    if feature.name == label_key:
      continue
    (strings if feature.type == schema_pb2.BYTES else numeric).append(feature.name)
  return numeric, strings


def build_model(numeric: List[str], strings: List[str], samples: Dict[str, tf.Tensor],
                num_classes: int) -> tf_keras.Model:
  """`samples` holds example values of every feature, to adapt the preprocessing layers."""
  inputs, encoded = {}, []
  for name in numeric:
    inputs[name] = tf_keras.Input(shape=(1,), name=name, dtype=tf.float32)
    normalize = tf_keras.layers.Normalization(axis=None, name=f'{name}_normalize')
    normalize.adapt(tf.cast(samples[name], tf.float32))
    encoded.append(normalize(inputs[name]))
  for name in strings:
    inputs[name] = tf_keras.Input(shape=(1,), name=name, dtype=tf.string)
    vocabulary = sorted({v.decode() for v in samples[name].numpy().tolist()})
    encoded.append(tf_keras.layers.StringLookup(
        vocabulary=vocabulary, output_mode='one_hot', name=f'{name}_lookup')(inputs[name]))
  x = tf_keras.layers.concatenate(encoded) if len(encoded) > 1 else encoded[0]
  for units in HIDDEN_UNITS:
    x = tf_keras.layers.Dense(units, activation='relu')(x)
  outputs = tf_keras.layers.Dense(num_classes, activation='softmax', name='probabilities')(x)
  model = tf_keras.Model(inputs=inputs, outputs=outputs)
  model.compile(optimizer=tf_keras.optimizers.Adam(LEARNING_RATE),
                loss='sparse_categorical_crossentropy',
                metrics=[tf_keras.metrics.SparseCategoricalAccuracy()])
  return model


def serving_function(model: tf_keras.Model, schema: schema_pb2.Schema, label_key: str):
  """serving_default: serialized tf.Examples in, class probabilities out."""
  feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  feature_spec.pop(label_key, None)

  @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
  def serve(serialized_examples):
    parsed = tf.io.parse_example(serialized_examples, feature_spec)
    features = {name: parsed[name] if parsed[name].dtype == tf.string
                else tf.cast(parsed[name], tf.float32) for name in model.input_names}
    return {'outputs': model(features)}

  return serve


def _dataset(files, data_accessor, schema, numeric: List[str]) -> tf.data.Dataset:
  dataset = data_accessor.tf_dataset_factory(
      files, tfxio.TensorFlowDatasetOptions(batch_size=BATCH_SIZE, label_key=configs.LABEL_KEY),
      schema=schema)

  def cast(features, label):
    return {k: tf.cast(v, tf.float32) if k in numeric else v for k, v in features.items()}, label

  return dataset.map(cast).repeat()


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trainer's entry point."""
  tf_keras.utils.set_random_seed(42)
  schema = tfx.utils.parse_pbtxt_file(fn_args.schema_file, schema_pb2.Schema())
  numeric, strings = split_features(schema, configs.LABEL_KEY)
  train = _dataset(fn_args.train_files, fn_args.data_accessor, schema, numeric)
  evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, schema, numeric)
  batches = [features for features, _ in train.take(ADAPT_BATCHES)]
  samples = {name: tf.concat([tf.reshape(b[name], [-1]) for b in batches], 0)
             for name in numeric + strings}
  model = build_model(numeric, strings, samples, configs.NUM_CLASSES)
  model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
            validation_steps=fn_args.eval_steps, verbose=2)
  model.save(fn_args.serving_model_dir, save_format='tf',
             signatures={'serving_default': serving_function(model, schema, configs.LABEL_KEY)})
