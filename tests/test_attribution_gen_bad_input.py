"""Bad input to AttributionGen: clear errors that name the culprit, nothing left behind."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap, PermutationImportance
from tfx_explain.beam.feature_spec import InputDataError
from tfx_explain.engine.base import ConfigError
from tfx_explain.engine.model import ModelAccessError
from tests import executors, penguin_fixtures
from tests.test_attribution_gen_executor import run_executor


def small_config(**overrides):
  settings = dict(methods=[IntegratedGradients(steps=8)], splits=['eval'], label_key='species',
                  batch_size=64)
  settings.update(overrides)
  return AttributionConfig(**settings)


def assert_nothing_published(uri):
  leftovers = tf.io.gfile.listdir(uri) if tf.io.gfile.exists(uri) else []
  assert leftovers == [], leftovers


def write_examples(root, rows_by_split):
  uri = os.path.join(root, 'examples')
  for split, rows in rows_by_split.items():
    penguin_fixtures.write_split(uri, split, rows)
  return uri


def test_split_that_does_not_exist(penguin_artifacts, tmp_path):
  out = str(tmp_path / 'out')
  with pytest.raises(ConfigError, match=r"Split 'test' does not exist.*\['train', 'eval'\]"):
    run_executor(penguin_artifacts, out, small_config(splits=['test']))
  assert_nothing_published(out)


def test_unknown_method_option_in_config(penguin_artifacts, tmp_path):
  config = json.loads(small_config().to_json())
  config['methods'][0]['stepz'] = 10
  with pytest.raises(ConfigError, match=r"Unknown option\(s\) \['stepz'\] for IntegratedGradients"):
    AttributionConfig.from_json(json.dumps(config))
  config = json.loads(small_config().to_json())
  config['slices'] = [['island']]
  with pytest.raises(ConfigError, match=r"unknown key\(s\) \['slices'\]"):
    AttributionConfig.from_json(json.dumps(config))


def test_permutation_importance_without_label_key(penguin_artifacts, tmp_path):
  out = str(tmp_path / 'out')
  with pytest.raises(ConfigError, match='need labels: set AttributionConfig.label_key'):
    run_executor(penguin_artifacts, out,
                 small_config(methods=[PermutationImportance()], label_key=None))
  assert_nothing_published(out)


@pytest.mark.parametrize('dropped, methods, message', [
    ('species', [PermutationImportance()],
     r"Feature 'species' \(label\) is missing from the examples"),
    ('flipper_length_mm', [IntegratedGradients(steps=8)],
     r"Feature 'flipper_length_mm' \(model input\) is missing from the examples in "
     r'.*Split-eval/data_tfrecord'),
])
def test_feature_absent_from_examples_without_a_schema(penguin_artifacts, tmp_path, dropped,
                                                       methods, message):
  rows = penguin_fixtures.rows_of(penguin_artifacts.splits['eval'][:20])
  for row in rows:
    row.pop(dropped)
  uri = write_examples(str(tmp_path), {'train': penguin_fixtures.rows_of(
      penguin_artifacts.splits['train'][:50]), 'eval': rows})
  out = str(tmp_path / 'out')
  with pytest.raises(Exception, match=message):
    run_executor(penguin_artifacts, out, small_config(methods=methods), schema=False,
                 examples=penguin_artifacts.examples(uri))
  assert_nothing_published(out)


def test_non_finite_rows_are_skipped_and_counted(penguin_artifacts, tmp_path):
  rows = penguin_fixtures.rows_of(penguin_artifacts.splits['eval'][:30])
  rows[3]['bill_length_mm'] = float('nan')
  rows[7]['body_mass_g'] = float('inf')
  uri = write_examples(str(tmp_path), {'train': penguin_fixtures.rows_of(
      penguin_artifacts.splits['train'][:80]), 'eval': rows})
  out = str(tmp_path / 'out')
  output = run_executor(penguin_artifacts, out,
                        small_config(methods=[IntegratedGradients(steps=8),
                                              KernelShap(num_samples=64, background_size=10)]),
                        examples=penguin_artifacts.examples(uri))
  summary = tfx_explain.load_summary(output.uri, 'eval')
  assert summary.skipped_non_finite_rows == 2
  assert summary.examples == 28
  frame = tfx_explain.load_attributions(output.uri, 'eval', method='integrated_gradients')
  assert 3 not in set(frame['example_index']) and 7 not in set(frame['example_index'])
  assert np.isfinite(frame['bill_length_mm']).all()
  assert output.get_int_custom_property('eval_skipped_rows') == 2


# --- one broken input each: the executor fails, names the culprit, publishes nothing -----------
# (tests/test_reliability.py runs one such fault through a LocalDagRunner pipeline.)

@pytest.fixture(scope='module')
def inputs(penguin_artifacts):
  """Small copies of the penguin rows; each fault writes its own examples from them."""
  return dict(train=penguin_fixtures.rows_of(penguin_artifacts.splits['train'][:80]),
              eval=penguin_fixtures.rows_of(penguin_artifacts.splits['eval'][:40]),
              model=penguin_artifacts.model_uri, schema=penguin_artifacts.schema_uri)


def write_both_splits(uri, train, evaluation, gzip=True):
  penguin_fixtures.write_split(uri, 'train', train, gzip=gzip)
  penguin_fixtures.write_split(uri, 'eval', evaluation, gzip=gzip)
  return uri


def corrupt_record(tmp_path, inputs):
  uri = write_both_splits(str(tmp_path / 'examples'), inputs['train'], inputs['eval'], gzip=False)
  [path] = glob.glob(os.path.join(uri, 'Split-eval', '*'))
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 0xFF
  open(path, 'wb').write(bytes(data))
  return (dict(examples=uri), InputDataError,
          r'Split-eval/data_tfrecord-00000-of-00001.*(checksum|CRC)')


def truncated_gzip(tmp_path, inputs):
  uri = write_both_splits(str(tmp_path / 'examples'), inputs['train'], inputs['eval'])
  [path] = glob.glob(os.path.join(uri, 'Split-eval', '*'))
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) * 2 // 3])
  return (dict(examples=uri), InputDataError,
          r'Cannot read TFRecord file .*Split-eval/data_tfrecord')


def wrong_dtype(tmp_path, inputs):
  rows = [dict(r, bill_length_mm=str(r['bill_length_mm'])) for r in inputs['eval']]
  uri = write_both_splits(str(tmp_path / 'examples'), inputs['train'], rows)
  # TensorFlow's parse error, re-raised by Beam: names the feature, not the file.
  return dict(examples=uri), Exception, (r'expected float_list, found bytes_list for feature '
                                          r'"bill_length_mm"')


def missing_feature(tmp_path, inputs):
  rows = [{k: v for k, v in r.items() if k != 'bill_depth_mm'} for r in inputs['eval']]
  uri = write_both_splits(str(tmp_path / 'examples'), inputs['train'], rows)
  return dict(examples=uri), InputDataError, (r"Feature 'bill_depth_mm' \(model input\) has no "
                                               r'value in an example of .*Split-eval/data_tfrecord')


def empty_split(tmp_path, inputs):
  uri = write_both_splits(str(tmp_path / 'examples'), inputs['train'], [])
  return dict(examples=uri), InputDataError, r"Split 'eval' has no examples to explain"


def not_a_saved_model(tmp_path, inputs):
  model = tmp_path / 'model' / 'Format-Serving'
  model.mkdir(parents=True)
  (model / 'weights.h5').write_bytes(b'not a model')
  return (dict(model=str(tmp_path / 'model')), ModelAccessError,
          r'Format-Serving is not a SavedModel directory')


def schema_without_model_input(tmp_path, inputs):
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  schema = penguin_fixtures.penguin_schema()
  del schema.feature[1]   # bill_depth_mm, an input of the model
  (tmp_path / 'schema').mkdir()
  (tmp_path / 'schema' / 'schema.pbtxt').write_text(text_format.MessageToString(schema))
  return (dict(schema=str(tmp_path / 'schema')), ConfigError,
          r"\['bill_depth_mm'\] are not features of the schema")


def unknown_config_key(tmp_path, inputs):
  config = json.loads(small_config().to_json())
  config['methods'][0]['stepz'] = 16
  return (dict(config=json.dumps(config)), ConfigError,
          r"Unknown option\(s\) \['stepz'\] for IntegratedGradients")


FAULTS = [corrupt_record, truncated_gzip, wrong_dtype, missing_feature, empty_split,
          not_a_saved_model, schema_without_model_input, unknown_config_key]


@pytest.mark.parametrize('fault', FAULTS, ids=lambda f: f.__name__)
def test_broken_input_fails_naming_it_and_publishes_nothing(inputs, tmp_path, fault):
  overrides, error, message = fault(tmp_path, inputs)
  examples = overrides.get('examples') or write_both_splits(
      str(tmp_path / 'examples'), inputs['train'], inputs['eval'])
  artifacts = {'examples': executors.examples_artifact(examples),
               'model': executors.artifact('Model', overrides.get('model', inputs['model'])),
               'schema': executors.artifact('Schema', overrides.get('schema', inputs['schema']))}
  out = str(tmp_path / 'out')
  with pytest.raises(error, match=message):
    executors.run_attribution_gen(artifacts, out, overrides.get('config', small_config()))
  assert_nothing_published(out)   # not even the staging folder
