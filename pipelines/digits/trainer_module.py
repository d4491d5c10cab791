"""Trainer module for the digits pipeline: a small tf_keras CNN on 8x8 images."""

from __future__ import annotations

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top
from tensorflow_transform.tf_metadata import schema_utils  # pylint: disable=g-import-not-at-top
from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top

from tfx_explain.pipelines.digits.data import IMAGE_KEY, IMAGE_SHAPE, LABEL_KEY  # pylint: disable=g-import-not-at-top


def build_model() -> tf_keras.Model:
  inputs = tf_keras.Input(shape=IMAGE_SHAPE, name=IMAGE_KEY)
  x = tf_keras.layers.Rescaling(1.0 / 16.0)(inputs)
  x = tf_keras.layers.Conv2D(16, 3, padding='same', activation='relu')(x)
  x = tf_keras.layers.Conv2D(32, 3, padding='same', activation='relu', name='last_conv')(x)
  x = tf_keras.layers.MaxPooling2D(2)(x)
  x = tf_keras.layers.Flatten()(x)
  outputs = tf_keras.layers.Dense(10, activation='softmax', name='probabilities')(x)
  model = tf_keras.Model(inputs, outputs)
  model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy',
                metrics=[tf_keras.metrics.SparseCategoricalAccuracy()])
  return model


def _dataset(files, data_accessor, schema, batch_size):
  dataset = data_accessor.tf_dataset_factory(
      files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL_KEY),
      schema=schema).repeat()
  return dataset.map(lambda features, label: (
      {IMAGE_KEY: tf.reshape(features[IMAGE_KEY], (-1,) + IMAGE_SHAPE)}, label))


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(42)
  schema = tfx.utils.parse_pbtxt_file(fn_args.schema_file, schema_pb2.Schema())
  model = build_model()
  model.fit(_dataset(fn_args.train_files, fn_args.data_accessor, schema, 32),
            steps_per_epoch=fn_args.train_steps,
            validation_data=_dataset(fn_args.eval_files, fn_args.data_accessor, schema, 64),
            validation_steps=fn_args.eval_steps, verbose=2)
  feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  feature_spec.pop(LABEL_KEY, None)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    parsed = tf.io.parse_example(serialized, feature_spec)
    return {'outputs': model(tf.reshape(parsed[IMAGE_KEY], (-1,) + IMAGE_SHAPE))}

  model.save(fn_args.serving_model_dir, save_format='tf', signatures={'serving_default': serve})
