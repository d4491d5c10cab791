"""Bad input to AttributionGen: clear errors that name the culprit, nothing left behind."""

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
from tests import penguin_fixtures
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


def test_model_input_missing_from_schema(penguin_artifacts, tmp_path):
  from tfx.types import standard_artifacts
  from google.protobuf import text_format
  schema = penguin_fixtures.penguin_schema()
  del schema.feature[1]   # bill_depth_mm
  schema_dir = tmp_path / 'schema'
  schema_dir.mkdir()
  (schema_dir / 'schema.pbtxt').write_text(text_format.MessageToString(schema))
  artifact = standard_artifacts.Schema()
  artifact.uri = str(schema_dir)
  out = str(tmp_path / 'out')
  with pytest.raises(ConfigError, match=r"\['bill_depth_mm'\] are not features of the schema"):
    run_executor(penguin_artifacts, out, small_config(), schema=artifact)
  assert_nothing_published(out)


def test_model_directory_that_is_not_a_saved_model(penguin_artifacts, tmp_path):
  bogus = tmp_path / 'model'
  (bogus / 'Format-Serving').mkdir(parents=True)
  (bogus / 'Format-Serving' / 'weights.txt').write_text('not a model')
  out = str(tmp_path / 'out')
  with pytest.raises(ModelAccessError, match='not a SavedModel directory'):
    run_executor(penguin_artifacts, out, small_config(), model=penguin_artifacts.model(str(bogus)))
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
def test_feature_absent_from_examples(penguin_artifacts, tmp_path, dropped, methods, message):
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


def test_empty_split(penguin_artifacts, tmp_path):
  uri = write_examples(str(tmp_path), {'train': penguin_fixtures.rows_of(
      penguin_artifacts.splits['train'][:50]), 'eval': []})
  out = str(tmp_path / 'out')
  with pytest.raises(InputDataError, match="Split 'eval' has no examples to explain"):
    run_executor(penguin_artifacts, out, small_config(), examples=penguin_artifacts.examples(uri))
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


def test_corrupt_tfrecord_names_the_file(penguin_artifacts, tmp_path):
  uri = write_examples(str(tmp_path), {'train': penguin_fixtures.rows_of(
      penguin_artifacts.splits['train'][:50]), 'eval': penguin_fixtures.rows_of(
          penguin_artifacts.splits['eval'][:50])})
  path = tf.io.gfile.glob(os.path.join(uri, 'Split-eval', '*'))[0]
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])   # truncated gzip
  out = str(tmp_path / 'out')
  with pytest.raises(Exception, match=r'Cannot read TFRecord file .*Split-eval/data_tfrecord'):
    run_executor(penguin_artifacts, out, small_config(), examples=penguin_artifacts.examples(uri))
  assert_nothing_published(out)
