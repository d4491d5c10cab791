"""TFX's mnist example: a Sequential MLP on 784 floats behind a Transform layer.

Its modules (mnist_utils_native_keras*.py) are copied unmodified from the
installed tfx package; the data are scikit-learn's digits drawn at 28x28 with
the example's feature names. With `image_shape=[28, 28, 1]` AttributionGen
explains the flat pixel vector with the image methods; without it, per pixel.
"""

import os

import numpy as np
import pytest

import tfx_explain
from tfx_explain import (AttributionConfig, AttributionGen, GradCam, ImageIntegratedGradients,
                         IntegratedGradients)
from tests import tfx_examples
from tfx_explain.artifacts import tables


@pytest.fixture(scope='module')
def mnist(tmp_path_factory):
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx_explain.review.notebook import PipelineStore  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp('mnist'))
  modules = tfx_examples.copy_mnist_modules(os.path.join(root, 'modules'))
  module_file = modules['mnist_utils_native_keras.py']
  data = os.path.join(root, 'data')
  tfx_examples.write_mnist_like_examples(data, count=600)
  example_gen = tfx.components.ImportExampleGen(input_base=data)
  statistics = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema = tfx.components.SchemaGen(statistics=statistics.outputs['statistics'],
                                    infer_feature_shape=True)
  transform = tfx.components.Transform(examples=example_gen.outputs['examples'],
                                       schema=schema.outputs['schema'], module_file=module_file)
  trainer = tfx.components.Trainer(
      module_file=module_file, examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'], schema=schema.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=150), eval_args=tfx.proto.EvalArgs(num_steps=5))
  as_images = AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema.outputs['schema'],
      config=AttributionConfig(methods=[ImageIntegratedGradients(steps=16)], splits=['eval'],
                               image_shape=[28, 28, 1], max_examples_per_split=40)
  ).with_id('ImageAttributionGen')
  per_pixel = AttributionGen(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      schema=schema.outputs['schema'],
      config=AttributionConfig(methods=[IntegratedGradients(steps=16, baseline='zeros')],
                               splits=['eval'], max_examples_per_split=40)
  ).with_id('PixelAttributionGen')
  metadata = os.path.join(root, 'metadata.sqlite')
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='tfx-mnist-example', pipeline_root=os.path.join(root, 'pipeline_root'),
      components=[example_gen, statistics, schema, transform, trainer, as_images, per_pixel],
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata),
      beam_pipeline_args=['--direct_num_workers=1']))
  store = PipelineStore(metadata)
  return {name: store.latest_uri(kind, name) for kind, name in [
      ('Model', 'Trainer'), ('Examples', 'ImportExampleGen'),
      ('tfx_explain.Attributions', 'ImageAttributionGen'),
      ('tfx_explain.Attributions', 'PixelAttributionGen')]}


@pytest.mark.slow
def test_flat_pixels_explained_as_images(mnist):
  uri = mnist['ImageAttributionGen']
  indices, maps = tables.load_maps(uri, 'eval', 'image_integrated_gradients')
  assert maps.shape[1:] == (28, 28, 1) and len(indices) == 40
  frame = tfx_explain.load_attributions(uri, 'eval')
  # The whole map sums to f(x) - f(black): completeness through the Transform layer.
  rows = frame.sort_values('example_index')
  np.testing.assert_allclose(maps.astype(np.float64).sum(axis=(1, 2, 3)),
                             (rows['prediction'] - rows['baseline_prediction']).to_numpy(),
                             rtol=0.05, atol=0.05)
  assert os.path.exists(os.path.join(uri, 'Split-eval', 'gallery',
                                     'image_integrated_gradients.png'))
  # The same path as per-pixel IG from zeros: the map is that table, laid out as an image.
  table = tfx_explain.load_attributions(mnist['PixelAttributionGen'], 'eval')
  table = table.set_index('example_index').loc[indices]
  pixels = table[[f'image_floats[{i}]' for i in range(784)]].to_numpy()
  np.testing.assert_allclose(maps.reshape(len(indices), 784).astype(np.float64), pixels,
                             rtol=1e-2, atol=2e-3 * np.abs(pixels).max())


@pytest.mark.slow
def test_flat_pixels_explained_per_pixel(mnist):
  frame = tfx_explain.load_attributions(mnist['PixelAttributionGen'], 'eval')
  pixels = [f'image_floats[{i}]' for i in range(784)]
  assert [c for c in frame.columns if c.startswith('image_floats[')] == pixels
  total = frame[pixels].sum(axis=1)
  np.testing.assert_allclose(total, frame['prediction'] - frame['baseline_prediction'],
                             rtol=0.05, atol=0.05)


@pytest.mark.slow
def test_grad_cam_on_flat_pixels_is_refused_with_what_to_use(mnist, tmp_path):
  from tfx_explain.configurable import ConfigError  # pylint: disable=g-import-not-at-top
  from tests import executors  # pylint: disable=g-import-not-at-top
  config = AttributionConfig(methods=[GradCam()], splits=['eval'], image_shape=[28, 28, 1],
                             max_examples_per_split=4)
  inputs = {'examples': executors.examples_artifact(mnist['ImportExampleGen']),
            'model': executors.artifact('Model', mnist['Trainer'])}
  out = str(tmp_path / 'out')
  with pytest.raises(ConfigError, match='GradCam needs a convolutional layer'):
    executors.run_attribution_gen(inputs, out, config)
  assert os.listdir(out) == []
