"""Test set-up: Keras 2 before TensorFlow loads, absl flags parsed, quiet logs.

Heavy imports (TensorFlow, TFX, TFMA, the penguin pipeline) happen inside the
fixtures that need them, so unit test files start in seconds.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import absl.flags  # pylint: disable=g-import-not-at-top
import absl.logging  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

absl.flags.FLAGS.mark_as_parsed()
absl.logging.set_verbosity(absl.logging.WARNING)


@pytest.fixture(scope='session')
def penguin_artifacts(tmp_path_factory):
  """Examples (train/eval TFRecords), schema and a trained Format-Serving model on disk."""
  from tests import penguin_fixtures  # pylint: disable=g-import-not-at-top
  return penguin_fixtures.make_penguin_artifacts(str(tmp_path_factory.mktemp('penguin')))


@pytest.fixture(scope='session')
def penguin_run(penguin_artifacts, tmp_path_factory):
  """AttributionGen's executor run once on the penguin artifacts: (output artifact, config)."""
  from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap  # pylint: disable=g-import-not-at-top
  from tests.test_attribution_gen_executor import run_executor  # pylint: disable=g-import-not-at-top
  config = AttributionConfig(
      methods=[IntegratedGradients(steps=32), KernelShap(num_samples=32, background_size=20)],
      splits=['eval'], label_key='species', slicing_specs=[[], ['island']], batch_size=40)
  uri = str(tmp_path_factory.mktemp('attr') / 'out')
  return run_executor(penguin_artifacts, uri, config), config
