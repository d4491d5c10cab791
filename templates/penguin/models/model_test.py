"""Unit tests of models/model.py: python -m pytest models"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top

from models import model  # pylint: disable=g-import-not-at-top


def small_schema():
  schema = schema_pb2.Schema()
  for name, kind in (('length', schema_pb2.FLOAT), ('count', schema_pb2.INT),
                     ('colour', schema_pb2.BYTES), ('label', schema_pb2.INT)):
    feature = schema.feature.add(name=name, type=kind)
    feature.shape.dim.add(size=1)
    feature.presence.min_fraction = 1.0
  return schema


def example(length, count, colour):
  return tf.train.Example(features=tf.train.Features(feature={
      'length': tf.train.Feature(float_list=tf.train.FloatList(value=[length])),
      'count': tf.train.Feature(int64_list=tf.train.Int64List(value=[count])),
      'colour': tf.train.Feature(bytes_list=tf.train.BytesList(value=[colour.encode()])),
  })).SerializeToString()


def test_split_features_leaves_out_the_label():
  assert model.split_features(small_schema(), 'label') == (['length', 'count'], ['colour'])


def test_serving_function_takes_serialized_examples():
  samples = {'length': tf.constant([1.0, 2.0, 3.0]), 'count': tf.constant([1.0, 5.0, 9.0]),
             'colour': tf.constant([b'red', b'blue', b'red'])}
  keras_model = model.build_model(['length', 'count'], ['colour'], samples, num_classes=3)
  serve = model.serving_function(keras_model, small_schema(), 'label')
  probabilities = serve(tf.constant([example(1.5, 3, 'red'), example(9.0, 1, 'green')]))
  probabilities = probabilities['outputs'].numpy()
  assert probabilities.shape == (2, 3)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
