"""End to end: the penguin pipeline on LocalDagRunner with a sqlite ML Metadata store."""

import os

import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import AttributionConfig, IntegratedGradients, KernelShap, SampledShapley


@pytest.fixture(scope='module')
def pipeline_run(tmp_path_factory):
  from tfx import v1 as tfx
  from tfx_explain.pipelines.penguin import pipeline as penguin
  root = str(tmp_path_factory.mktemp('pipeline'))
  metadata_path = os.path.join(root, 'metadata.sqlite')
  config = AttributionConfig(
      methods=[IntegratedGradients(steps=32), KernelShap(num_samples=128, background_size=20),
               SampledShapley(num_permutations=8)],
      splits=['eval'], label_key='species', slicing_specs=[[], ['island'], ['island', 'sex']])
  tfx.orchestration.LocalDagRunner().run(penguin.create_pipeline(
      'penguin-test', os.path.join(root, 'pipeline_root'), metadata_path, train_steps=60,
      attribution_config=config))
  return metadata_path


def _store(metadata_path):
  from ml_metadata.metadata_store import metadata_store
  from tfx.orchestration import metadata
  return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


@pytest.mark.slow
def test_attributions_artifact_is_tracked_with_lineage(pipeline_run):
  store = _store(pipeline_run)
  [artifact] = store.get_artifacts_by_type('tfx_explain.Attributions')
  assert artifact.state == artifact.LIVE
  props = artifact.custom_properties
  assert props['eval_example_count'].int_value > 50
  assert props['eval_integrated_gradients_completeness_error_p95'].double_value < 0.05
  # Lineage: the execution that wrote it read the Trainer's model and ExampleGen's examples.
  [output_event] = [e for e in store.get_events_by_artifact_ids([artifact.id])
                    if e.type == e.OUTPUT]
  inputs = [e for e in store.get_events_by_execution_ids([output_event.execution_id])
            if e.type == e.INPUT]
  input_types = {store.get_artifact_types_by_id(
      [a.type_id])[0].name for a in store.get_artifacts_by_id([e.artifact_id for e in inputs])}
  assert {'Model', 'Examples', 'Schema'} <= input_types


@pytest.mark.slow
def test_attributions_readable_by_tfma_and_notebook_api(pipeline_run):
  import tensorflow_model_analysis as tfma
  store = _store(pipeline_run)
  [artifact] = store.get_artifacts_by_type('tfx_explain.Attributions')
  split_dir = os.path.join(artifact.uri, 'Split-eval')
  slices = list(tfma.load_attributions(split_dir))
  keys = {tuple((c.column, c.bytes_value) for c in s.slice_key.single_slice_keys) for s in slices}
  assert () in keys and any(len(k) == 2 for k in keys)
  frame = tfx_explain.load_attributions(artifact.uri)
  assert set(frame['method']) == {'integrated_gradients', 'kernel_shap', 'sampled_shapley'}
  summary = tfx_explain.load_summary(artifact.uri)
  assert summary['slices'][0]['examples'] == artifact.custom_properties[
      'eval_example_count'].int_value
  assert tf.io.gfile.exists(os.path.join(artifact.uri, 'reference.json'))


@pytest.mark.slow
def test_evaluator_ran_beside_us(pipeline_run):
  store = _store(pipeline_run)
  blessings = store.get_artifacts_by_type('ModelBlessing')
  assert len(blessings) == 1
