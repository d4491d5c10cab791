"""End to end: the digits pipeline (8x8 images, a CNN) with Grad-CAM and pixel IG."""

import os

import numpy as np
import pytest
import tensorflow as tf

import tfx_explain
from tfx_explain import AttributionConfig, GradCam, IntegratedGradients
from tfx_explain.configurable import ConfigError
from tfx_explain.artifacts import tables


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
  from tfx import v1 as tfx
  from tfx_explain.pipelines.digits import data, pipeline
  root = str(tmp_path_factory.mktemp('digits'))
  data_root = os.path.join(root, 'data')
  data.write_digits_examples(data_root)
  metadata_path = os.path.join(root, 'metadata.sqlite')
  tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(
      'digits-test', os.path.join(root, 'pipeline_root'), data_root, metadata_path,
      train_steps=150))
  from tfx_explain.review.notebook import PipelineStore
  store = PipelineStore(metadata_path)
  return (store.latest_uri('tfx_explain.Attributions'), store.latest_uri('Model'),
          store.latest_uri('Examples'))


@pytest.mark.slow
def test_maps_are_stored_compactly_per_example(digits_run):
  uri, _, _ = digits_run
  table = tfx_explain.load_attributions(uri)
  assert set(table['method']) == {'grad_cam', 'image_integrated_gradients'}
  for method in ('grad_cam', 'image_integrated_gradients'):
    indices, maps = tables.load_maps(uri, 'eval', method)
    assert maps.dtype == np.float16 and maps.shape[1:] in ((8, 8, 1),)
    rows = table[table['method'] == method]
    np.testing.assert_array_equal(indices, rows['example_index'].values)
    # The table's per-image total is the map's sum (float16 storage, so loosely).
    np.testing.assert_allclose(rows['image'].values, maps.astype(np.float64).sum(axis=(1, 2, 3)),
                               rtol=2e-2, atol=2e-2)
  summary = tfx_explain.load_summary(uri)
  assert summary.image.shape == [8, 8, 1]
  ig = summary.methods['image_integrated_gradients']
  assert ig.relative_completeness_error.p95 < 0.05


@pytest.mark.slow
def test_gallery_and_per_digit_mean_maps(digits_run):
  uri, _, _ = digits_run
  for method in ('grad_cam', 'image_integrated_gradients'):
    path = os.path.join(uri, 'Split-eval', 'gallery', f'{method}.png')
    data = tf.io.gfile.GFile(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
  means = tables.load_mean_maps(uri)
  digit_slices = [k for k in means if k.startswith('grad_cam|label=')]
  assert len(digit_slices) == 10
  assert means['grad_cam|Overall'].shape == (8, 8)


@pytest.mark.slow
def test_tfma_reads_image_region_attributions(digits_run):
  import tensorflow_model_analysis as tfma
  uri, _, _ = digits_run
  result = tfma.load_eval_result(os.path.join(uri, 'Split-eval'))
  overall = result.get_attributions_for_slice(metric_name='grad_cam/mean_attributions')
  assert set(overall) == {'image', 'image/top_left', 'image/top_right', 'image/bottom_left',
                          'image/bottom_right'}


@pytest.mark.slow
def test_tabular_methods_are_refused_for_the_cnn(digits_run, tmp_path):
  from tfx.types import artifact_utils, standard_artifacts
  from tfx_explain.attribution_gen import executor as executor_lib
  _, model_uri, examples_uri = digits_run
  examples = standard_artifacts.Examples()
  examples.uri = examples_uri
  examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  model = standard_artifacts.Model()
  model.uri = model_uri
  output = tfx_explain.Attributions()
  output.uri = str(tmp_path / 'out')
  config = AttributionConfig(methods=[IntegratedGradients()], splits=['eval'])
  with pytest.raises(ConfigError, match=r"\['integrated_gradients'\] do not apply to an image"):
    executor_lib.Executor().Do({'examples': [examples], 'model': [model]},
                               {'attributions': [output]}, {'config': config.to_json()})


def test_image_methods_are_refused_for_a_tabular_model(penguin_artifacts, tmp_path):
  from tests.test_attribution_gen_executor import run_executor
  config = AttributionConfig(methods=[GradCam()], splits=['eval'])
  with pytest.raises(ConfigError, match=r"\['grad_cam'\] do not apply to a tabular model"):
    run_executor(penguin_artifacts, str(tmp_path / 'out'), config)


@pytest.mark.slow
def test_image_overlay_plot_on_real_maps(digits_run, tmp_path):
  from tfx_explain import plots
  from tfx_explain.review.gallery import first_images
  from tfx_explain.beam.feature_spec import FeatureSpec
  uri, _, examples_uri = digits_run
  indices, maps = tables.load_maps(uri, 'eval', 'grad_cam')
  files = tf.io.gfile.glob(os.path.join(examples_uri, 'Split-eval', '*'))
  spec = FeatureSpec(model_inputs=('image',), input_dtypes=('float32',), image_shape=(8, 8, 1))
  shown, images = first_images(files, spec, 6)
  assert list(indices[:6]) == list(shown)   # maps are keyed by the same example index
  figure = plots.image_overlays(images, maps[:6].astype(np.float32),
                                titles=[str(i) for i in shown])
  figure.savefig(tmp_path / 'overlay.png')
  assert (tmp_path / 'overlay.png').stat().st_size > 3000


@pytest.mark.slow
def test_grad_cam_images_in_tensorboard(digits_run):
  from tests.test_attribution_gen_executor import _tensorboard_tags
  uri, _, _ = digits_run
  tags = _tensorboard_tags(os.path.join(uri, 'tensorboard', 'eval'))
  assert 'grad_cam/overlays' in set(tags['tensors']) | set(tags['images'])
