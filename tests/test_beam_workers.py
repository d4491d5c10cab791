"""TensorFlow threads per Beam worker: validated in the config, set before a worker runs TensorFlow."""

import os
import subprocess
import sys

import pytest

from tfx_explain import AttributionConfig, IntegratedGradients
from tfx_explain.beam import attribution
from tfx_explain.beam import reference_stats
from tfx_explain.beam.feature_spec import FeatureSpec

SPEC = FeatureSpec(model_inputs=('x',), input_dtypes=('float32',))


def test_threads_are_set_before_tensorflow_starts_and_kept_after():
  script = '''
import tensorflow as tf
from tfx_explain.beam.worker import set_tf_threads
assert set_tf_threads(None)
assert set_tf_threads(1)
print(float(tf.reduce_sum(tf.ones([4]))))   # the runtime starts with one thread per pool
assert tf.config.threading.get_intra_op_parallelism_threads() == 1
assert tf.config.threading.get_inter_op_parallelism_threads() == 1
assert set_tf_threads(1)          # what it already uses
assert not set_tf_threads(2)      # too late: logged, left as it is
assert tf.config.threading.get_intra_op_parallelism_threads() == 1
print('ok')
'''
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['4.0', 'ok']
  assert 'tf_threads_per_worker=2 applies to the worker processes' in result.stderr


def test_attribute_fn_sets_the_threads_before_it_loads_the_model(monkeypatch):
  calls = []
  monkeypatch.setattr(attribution, 'set_tf_threads', lambda n: calls.append(('threads', n)))
  monkeypatch.setattr(AttributionConfig, 'load_model',
                      lambda self, *args, **kwargs: calls.append(('load', args[0])))
  config = AttributionConfig(methods=[IntegratedGradients()], tf_threads_per_worker=3)
  fn = attribution.AttributeBatchFn(attribution.ModelSettings('/model'), config.to_json(), SPEC,
                                    [[]], row_schema=None)
  fn.setup()
  assert calls == [('threads', 3), ('load', '/model')]


def test_reference_decoding_sets_the_threads(monkeypatch):
  calls = []
  monkeypatch.setattr(reference_stats, 'set_tf_threads', calls.append)
  reference_stats._DecodeForStats(SPEC, seed=0, tf_threads=2).setup()
  transform = reference_stats.ComputeReferenceStats(SPEC, 10, 0, tf_threads=4)
  assert calls == [2] and transform._tf_threads == 4


def _worker_threads(batch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return [(os.getpid(), tf.config.threading.get_intra_op_parallelism_threads(),
           tf.config.threading.get_inter_op_parallelism_threads())]


@pytest.mark.slow
def test_worker_processes_run_tensorflow_with_the_configured_threads():
  import apache_beam as beam
  import tensorflow as tf
  from apache_beam.options.pipeline_options import PipelineOptions
  from tensorflow_metadata.proto.v0 import schema_pb2
  schema = schema_pb2.Schema()
  schema.feature.add(name='x', type=schema_pb2.FLOAT)
  spec = FeatureSpec(model_inputs=('x',), input_dtypes=('float32',),
                     serialized_schema=schema.SerializeToString())
  record = tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))})).SerializeToString()
  batches = [[(i, 'f', record)] for i in range(8)]
  options = PipelineOptions(['--direct_running_mode=multi_processing', '--direct_num_workers=2'])
  with beam.Pipeline(options=options) as pipeline:
    seen = (pipeline
            | beam.Create(batches)
            | beam.Reshuffle()
            | beam.ParDo(reference_stats._DecodeForStats(spec, seed=0, tf_threads=1))
            | beam.FlatMap(_worker_threads)
            | beam.combiners.ToList())
    seen | beam.Map(_check_workers, os.getpid())


def _check_workers(seen, runner_pid):
  pids = {pid for pid, _, _ in seen}
  assert len(seen) == 8 and runner_pid not in pids and len(pids) == 2, seen
  assert {(intra, inter) for _, intra, inter in seen} == {(1, 1)}, seen
