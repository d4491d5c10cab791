"""ExampleDecoder: the parse_example path decodes exactly what the checked path does."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from tfx_explain.beam.decoding import ExampleDecoder
from tfx_explain.beam.feature_spec import FeatureSpec, InputDataError

FILES = ['a.gz'] * 5


def _example(**features) -> bytes:
  example = tf.train.Example()
  for name, values in features.items():
    feature = example.features.feature[name]
    if values and isinstance(values[0], bytes):
      feature.bytes_list.value.extend(values)
    elif values and isinstance(values[0], float):
      feature.float_list.value.extend(values)
    elif values:
      feature.int64_list.value.extend(values)
  return example.SerializeToString()


def _schema(**types) -> bytes:
  schema = schema_pb2.Schema()
  for name, kind in types.items():
    schema.feature.add(name=name, type=kind)
  return schema.SerializeToString()


def _records(rows):
  return [_example(**row) for row in rows]


TABULAR_ROWS = [
    {'x': [1.5], 'n': [3], 'island': [b'Biscoe'], 'v': [0.5, 1.0, -2.0], 'species': [2],
     'tags': [b'a', b'b']},
    {'x': [float('nan')], 'n': [1], 'island': [b'Dream'], 'v': [1.0, 2.0, 3.0], 'species': [0],
     'tags': []},
    {'x': [-0.25], 'n': [7], 'island': [b'Biscoe'], 'v': [4.0, 5.0, 6.0], 'species': [1],
     'tags': [b'c']},
    {'x': [2.0], 'n': [0], 'island': [b'Torgersen'], 'v': [0.0, 0.0, 0.0], 'species': [1],
     'tags': [b'a']},
    {'x': [3.0], 'n': [2], 'island': [b'Dream'], 'v': [7.0, 8.0, 9.0], 'species': [2],
     'tags': [b'a', b'c', b'd']},
]
TABULAR_SCHEMA = _schema(x=schema_pb2.FLOAT, n=schema_pb2.INT, island=schema_pb2.BYTES,
                         v=schema_pb2.FLOAT, species=schema_pb2.INT, tags=schema_pb2.BYTES)
TABULAR_SPEC = FeatureSpec(
    model_inputs=('x', 'n', 'island', 'v[0]', 'v[1]', 'v[2]'),
    input_dtypes=('float32', 'float32', 'string', 'float32', 'float32', 'float32'),
    label_key='species', slice_features=('island', 'species', 'tags', 'n'),
    serialized_schema=TABULAR_SCHEMA, vectors=(('v', 3),))


def _assert_same(a, b):
  features_a, labels_a, slices_a = a
  features_b, labels_b, slices_b = b
  assert list(features_a) == list(features_b)
  for name in features_a:
    assert features_a[name].dtype == features_b[name].dtype, name
    np.testing.assert_array_equal(features_a[name], features_b[name])
  if labels_a is None:
    assert labels_b is None
  else:
    assert labels_a.dtype == labels_b.dtype
    np.testing.assert_array_equal(labels_a, labels_b)
  assert slices_a == slices_b


@pytest.mark.parametrize('need_label', [True, False])
def test_parsed_and_checked_decoding_agree(need_label):
  decoder = ExampleDecoder(TABULAR_SPEC)
  records = _records(TABULAR_ROWS)
  parsed = decoder.decode(records, FILES, need_label)
  # The compiled parser is used for this batch, not the checked path.
  assert decoder._parsers[need_label] is not None
  assert decoder._decode_parsed(decoder._parsers[need_label], records, FILES, need_label)
  _assert_same(parsed, decoder._decode_checked(records, FILES, need_label))
  features, labels, slices = parsed
  assert features['island'].dtype == object and features['n'].dtype == np.float32
  np.testing.assert_array_equal(features['v[1]'], [1.0, 2.0, 5.0, 0.0, 8.0])
  assert slices['tags'] == [['a', 'b'], [], ['c'], ['a'], ['a', 'c', 'd']]
  assert slices['island'][0] == ['Biscoe'] and slices['n'][2] == [7]
  assert (labels is not None) == need_label


def test_images_decode_alike():
  rows = [{'image': [float(i + k) for i in range(12)], 'label': [k]} for k in range(5)]
  spec = FeatureSpec(model_inputs=('image',), input_dtypes=('float32',), label_key='label',
                     serialized_schema=_schema(image=schema_pb2.FLOAT, label=schema_pb2.INT),
                     image_shape=(2, 3, 2))
  decoder = ExampleDecoder(spec)
  records = _records(rows)
  parsed = decoder.decode(records, FILES, True)
  assert parsed[0]['image'].shape == (5, 2, 3, 2)
  _assert_same(parsed, decoder._decode_checked(records, FILES, True))


def test_what_the_parser_rejects_is_decoded_or_reported_the_checked_way():
  decoder = ExampleDecoder(TABULAR_SPEC)
  # Ints where the schema says FLOAT: parse_example refuses, the checked path decides.
  rows = [dict(row, x=[k]) for k, row in enumerate(TABULAR_ROWS)]
  records = _records(rows)
  with pytest.raises(Exception) as parsed_error:
    decoder.decode(records, FILES, True)
  with pytest.raises(Exception) as checked_error:
    # A fresh decoder: tfx_bsl's is unusable after an error.
    ExampleDecoder(TABULAR_SPEC)._decode_checked(records, FILES, True)
  assert str(parsed_error.value) == str(checked_error.value)
  # A missing model input or a second value: the checked path's message.
  for bad in ({'x': []}, {'x': [1.0, 2.0]}, {'v': [1.0]}):
    rows = [dict(TABULAR_ROWS[0], **bad)] + TABULAR_ROWS[1:]
    with pytest.raises(InputDataError, match="Feature '[xv]' \\(model input\\)"):
      ExampleDecoder(TABULAR_SPEC).decode(_records(rows), FILES, True)
  # A label that is missing is only an error when labels are needed.
  rows = [dict(TABULAR_ROWS[0], species=[])] + TABULAR_ROWS[1:]
  decoder = ExampleDecoder(TABULAR_SPEC)
  _assert_same(decoder.decode(_records(rows), FILES, False),
               decoder._decode_checked(_records(rows), FILES, False))
  with pytest.raises(InputDataError, match="'species' \\(label\\)"):
    decoder.decode(_records(rows), FILES, True)


def test_without_a_schema_the_checked_path_decodes():
  spec = FeatureSpec(model_inputs=('x',), input_dtypes=('float32',),
                     slice_features=('island',))
  decoder = ExampleDecoder(spec)
  records = _records(TABULAR_ROWS)
  features, _, slices = decoder.decode(records, FILES, False)
  assert not decoder._parsers
  np.testing.assert_array_equal(features['x'][[0, 2]], [1.5, -0.25])
  assert slices['island'][1] == ['Dream']
