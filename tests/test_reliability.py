"""Faults, kills and re-runs: every failure names its cause, nothing half-written is published.

Pipeline-level cases run `tests/explain_pipeline.py` (importers, then AttributionGen)
with LocalDagRunner on sqlite and then look in ML Metadata and on disk.
"""

import glob
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

import tfx_explain
from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap, SmoothGrad
from tests import explain_pipeline, penguin_fixtures
from tests.test_attribution_gen_bad_input import missing_feature
from tests.test_attribution_gen_executor import run_executor
from tfx_explain.artifacts import layout
from tfx_explain.artifacts import storage
from tfx_explain.artifacts import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTION = metadata_store_pb2.Execution
ARTIFACT = metadata_store_pb2.Artifact


def small_config(**overrides):
  settings = dict(methods=[IntegratedGradients(steps=8)], splits=['eval'], label_key='species',
                  batch_size=32)
  settings.update(overrides)
  return AttributionConfig(**settings)


@pytest.fixture(scope='module')
def inputs(penguin_artifacts, tmp_path_factory):
  """Small copies of the penguin inputs, one folder per fault so each test can break its own."""
  root = tmp_path_factory.mktemp('inputs')
  train = penguin_fixtures.rows_of(penguin_artifacts.splits['train'][:80])
  evaluation = penguin_fixtures.rows_of(penguin_artifacts.splits['eval'][:40])
  return dict(root=str(root), train=train, eval=evaluation, model=penguin_artifacts.model_uri,
              schema=penguin_artifacts.schema_uri)


def write_examples(uri, train, evaluation, gzip=True):
  penguin_fixtures.write_split(uri, 'train', train, gzip=gzip)
  penguin_fixtures.write_split(uri, 'eval', evaluation, gzip=gzip)
  return uri


def settings_for(tmp_path, inputs, examples=None, model=None, schema=None, config=None,
                 **extra):
  """Keyword arguments of explain_pipeline.create_pipeline."""
  if examples is None:
    examples = write_examples(str(tmp_path / 'examples'), inputs['train'], inputs['eval'])
  return dict(name='reliability', root=str(tmp_path / 'root'),
              metadata=str(tmp_path / 'metadata.sqlite'), examples_uri=examples,
              model_uri=model or inputs['model'], schema_uri=schema or inputs['schema'],
              config=config or small_config().to_json(), **extra)


def open_store(path):
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  return metadata_store.MetadataStore(config)


def attribution_records(settings):
  """(AttributionGen executions, Attributions artifacts) in the store."""
  store = open_store(settings['metadata'])
  types = {t.id: t.name for t in store.get_execution_types()}
  executions = [e for e in store.get_executions() if types[e.type_id].endswith('AttributionGen')]
  return executions, store.get_artifacts_by_type('tfx_explain.Attributions')


def published_files(uri):
  """Files under an output folder other than our staging area."""
  found = []
  for root, dirs, files in os.walk(uri):
    dirs[:] = [d for d in dirs if d != storage.STAGING_DIR]
    found += [os.path.relpath(os.path.join(root, f), uri) for f in files]
  return found


def assert_failed_cleanly(settings):
  executions, artifacts = attribution_records(settings)
  assert [e.last_known_state for e in executions] == [EXECUTION.FAILED]
  assert not [a for a in artifacts if a.state == ARTIFACT.LIVE]
  outputs = glob.glob(os.path.join(settings['root'], 'AttributionGen', 'attributions', '*'))
  for uri in outputs:
    assert published_files(uri) == [], uri
    assert not os.path.exists(os.path.join(uri, storage.STAGING_DIR))


# --- bad input: the pipeline run fails, names the cause, publishes nothing -------------------
# One fault end to end; every other fault is checked on the executor, with the same
# messages, in tests/test_attribution_gen_bad_input.py.

@pytest.mark.slow
def test_failed_run_exits_non_zero_says_why_and_publishes_nothing(inputs, tmp_path):
  overrides, _, message = missing_feature(tmp_path, inputs)
  settings = settings_for(tmp_path, inputs, **overrides)
  (tmp_path / 'settings.json').write_text(json.dumps(settings))
  result = subprocess.run([sys.executable, '-m', 'tests.explain_pipeline',
                           str(tmp_path / 'settings.json')], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode != 0
  # The executor's message, with the file it read, is what the user sees last.
  assert re.search(message, result.stderr.splitlines()[-1]), result.stderr[-3000:]
  assert settings['examples_uri'] in result.stderr.splitlines()[-1]
  assert_failed_cleanly(settings)


def test_extra_features_are_ignored(penguin_artifacts, inputs, tmp_path):
  """Columns the model does not take (ids, timestamps) are not an error."""
  rows = [dict(r, row_id=i, note='x') for i, r in enumerate(inputs['eval'])]
  uri = write_examples(str(tmp_path / 'examples'), inputs['train'], rows)
  output = run_executor(penguin_artifacts, str(tmp_path / 'out'), small_config(), schema=False,
                        examples=penguin_artifacts.examples(uri))
  frame = tfx_explain.load_attributions(output.uri)
  assert len(frame) == len(rows) and 'row_id' not in frame.columns


# --- output folder that cannot be written ----------------------------------------------------

@pytest.fixture
def small_mount(tmp_path):
  """A 32 KiB tmpfs: too small for an attributions artifact. Needs root (CI runs as root)."""
  mount = tmp_path / 'mnt'
  mount.mkdir()
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=32k', 'tmpfs',
                                          str(mount)], capture_output=True).returncode != 0:
    pytest.skip('mounting a tmpfs needs root')
  yield mount
  subprocess.run(['umount', '-l', str(mount)], check=False)


def test_full_output_directory(penguin_artifacts, small_mount):
  out = small_mount / 'out'
  config = small_config(methods=[IntegratedGradients(steps=8), SmoothGrad(num_samples=4)])
  with pytest.raises(Exception, match=rf'{out}.*(No space left|space)'):
    run_executor(penguin_artifacts, str(out), config)
  assert published_files(str(out)) == []
  assert not os.path.exists(out / storage.STAGING_DIR)


def test_read_only_output_directory(penguin_artifacts, small_mount):
  out = small_mount / 'out'
  out.mkdir()
  subprocess.run(['mount', '-o', 'remount,ro', str(small_mount)], check=True)
  with pytest.raises(Exception, match=rf'{out}.*(Read-only|read-only)'):
    run_executor(penguin_artifacts, str(out), small_config())
  assert os.listdir(out) == []


# --- killed in the middle, then re-run --------------------------------------------------------

@pytest.mark.slow
def test_sigkill_during_attribution_gen_then_rerun_completes(inputs, tmp_path):
  # Enough work that the kill lands while AttributionGen runs.
  config = small_config(methods=[IntegratedGradients(steps=64),
                                 KernelShap(num_samples=4096, background_size=80)])
  settings = settings_for(tmp_path, inputs, config=config.to_json())
  (tmp_path / 'settings.json').write_text(json.dumps(settings))
  command = [sys.executable, '-m', 'tests.explain_pipeline', str(tmp_path / 'settings.json')]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
  staging = os.path.join(settings['root'], 'AttributionGen', 'attributions', '*',
                         storage.STAGING_DIR)
  deadline = time.time() + 300
  while not glob.glob(staging) and process.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  assert glob.glob(staging), 'AttributionGen never started'
  # Kill once the Beam pipeline writes into the staging folder: mid-run.
  while not glob.glob(os.path.join(staging, '*')) and process.poll() is None and \
      time.time() < deadline:
    time.sleep(0.05)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait(timeout=60)
  [killed_uri] = [os.path.dirname(p) for p in glob.glob(staging)]
  assert published_files(killed_uri) == []

  executions, artifacts = attribution_records(settings)
  assert [e.last_known_state for e in executions] == [EXECUTION.RUNNING]
  assert not [a for a in artifacts if a.state == ARTIFACT.LIVE]

  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  executions, artifacts = attribution_records(settings)
  states = sorted(EXECUTION.State.Name(e.last_known_state) for e in executions)
  assert states == ['COMPLETE', 'RUNNING']   # the killed one is never recorded as a success
  [live] = [a for a in artifacts if a.state == ARTIFACT.LIVE]
  assert live.uri != killed_uri
  frame = tfx_explain.load_attributions(live.uri)
  assert len(frame) == 2 * len(inputs['eval'])
  assert tfx_explain.load_summary(live.uri, 'eval').examples == len(inputs['eval'])


# --- caching -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_cache_reuses_unchanged_runs_and_reexecutes_on_config_change(inputs, tmp_path):
  settings = settings_for(tmp_path, inputs, enable_cache=True)
  explain_pipeline.run(settings)
  explain_pipeline.run(settings)
  executions, artifacts = attribution_records(settings)
  assert [EXECUTION.State.Name(e.last_known_state) for e in executions] == ['COMPLETE', 'CACHED']
  assert len(artifacts) == 1

  settings['config'] = small_config(methods=[IntegratedGradients(steps=9)]).to_json()
  explain_pipeline.run(settings)
  executions, artifacts = attribution_records(settings)
  assert [EXECUTION.State.Name(e.last_known_state) for e in executions] == [
      'COMPLETE', 'CACHED', 'COMPLETE']
  assert len({a.uri for a in artifacts}) == 2


# --- determinism: tests/test_beam_modes.py (re-runs and runner modes give equal tables) ------

# --- security hygiene ---------------------------------------------------------------------------

class _WritesMarker:
  """Unpickling this object would create a file."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, 'w'))


def test_model_loading_runs_no_python_from_the_model(penguin_artifacts, tmp_path):
  import tf_keras  # pylint: disable=g-import-not-at-top
  marker = tmp_path / 'ran'
  # A Lambda layer keeps its Python function as marshalled bytecode in the SavedModel.
  inputs = {n: tf_keras.Input(shape=(1,), name=n) for n in ('a', 'b')}
  touched = tf_keras.layers.Lambda(
      lambda x, path=str(marker): (open(path, 'a').close(), x * 2.0)[1])(inputs['a'])
  outputs = tf_keras.layers.Dense(2, activation='softmax')(
      tf_keras.layers.concatenate([touched, inputs['b']]))
  model_dir = tmp_path / 'model' / 'Format-Serving'
  tf_keras.Model(inputs, outputs).save(str(model_dir), save_format='tf')
  marker.unlink()   # saving traced the lambda
  # And a pickle beside it that would write the marker if anything unpickled it.
  (model_dir / 'model.pkl').write_bytes(pickle.dumps(_WritesMarker(str(marker))))

  model = tfx_explain.load_model_function(str(tmp_path / 'model'))
  result = tfx_explain.IntegratedGradients(steps=4).attribute(
      model, {'a': np.ones(3, np.float32), 'b': np.zeros(3, np.float32)})
  assert np.isfinite(result.attributions).all()
  assert not marker.exists()


def test_maps_with_pickled_objects_are_refused(tmp_path):
  split = tmp_path / 'attributions' / 'Split-eval' / layout.MAPS_DIR
  split.mkdir(parents=True)
  marker = tmp_path / 'ran'
  np.savez(split / 'grad_cam-00000.npz', example_index=np.arange(1),
           maps=np.array([_WritesMarker(str(marker))], dtype=object))
  with pytest.raises(ValueError, match='allow_pickle'):
    tables.load_maps(str(tmp_path / 'attributions'), 'eval')
  assert not marker.exists()


def test_no_unpickling_in_the_package():
  """Our code never deserialises Python objects from data: no pickle/joblib/dill loads."""
  offenders = []
  for folder in ('components', 'pipelines', 'kubeflow', 'templates'):
    for path in glob.glob(os.path.join(REPO, folder, '**', '*.py'), recursive=True):
      text = open(path).read()
      for needle in ('pickle.load', 'joblib.load', 'dill.load', 'allow_pickle=True',
                     'safe_mode=False', 'cloudpickle.load', 'marshal.load'):
        if needle in text:
          offenders.append(f'{os.path.relpath(path, REPO)}: {needle}')
  assert offenders == []


def test_report_escapes_slice_values_from_the_data(penguin_artifacts, inputs, tmp_path):
  hostile = '<img src=x onerror=alert(1)>'
  rows = [dict(r, island=hostile if i % 2 else r['island']) for i, r in enumerate(inputs['eval'])]
  uri = write_examples(str(tmp_path / 'examples'), inputs['train'], rows)
  output = run_executor(penguin_artifacts, str(tmp_path / 'out'),
                        small_config(slicing_specs=[[], ['island']]),
                        examples=penguin_artifacts.examples(uri))
  html = open(os.path.join(output.uri, layout.REPORT_FILE)).read()
  assert hostile not in html and '&lt;img src=x onerror=alert(1)&gt;' in html
