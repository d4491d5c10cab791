"""Image methods: Grad-CAM finds planted evidence, IG completeness on a CNN, clear refusals."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfx_explain.configurable import ConfigError
from tfx_explain.engine.image import (GradCam, ImageGradientTimesInput, ImageIntegratedGradients,
                                      ImageModel, ImageSmoothGrad, image_baselines, region_mass)
from tfx_explain.engine.model import ModelAccessError

SIZE = 16
CROSS = np.array([[-1, 1, -1], [1, 1, 1], [-1, 1, -1]], np.float32)


def detector_cnn():
  """Channel 0 fires on a plus-shaped cross, channel 1 on a filled 3x3 square.

  Class 1 ('cross present') reads channel 0, class 0 reads channel 1, through
  global average pooling: the class evidence sits exactly where the cross is.
  """
  inputs = tf_keras.Input((SIZE, SIZE, 1))
  conv = tf_keras.layers.Conv2D(2, 3, padding='same', activation='relu', name='detectors')
  x = conv(inputs)
  x = tf_keras.layers.MaxPooling2D(2, name='pool')(x)
  x = tf_keras.layers.GlobalAveragePooling2D()(x)
  head = tf_keras.layers.Dense(2, name='head')
  outputs = tf_keras.layers.Softmax()(head(x) * 20.0)
  model = tf_keras.Model(inputs, outputs)
  square = np.full((3, 3), 0.5, np.float32)
  kernel = np.stack([CROSS, square], axis=-1)[:, :, None, :]
  # Bias thresholds: the cross filter gives 5 on a cross and 1 on a square; the square
  # filter gives 4.5 on a square and 2.5 on a cross.
  conv.set_weights([kernel, np.array([-3.0, -3.0], np.float32)])
  head.set_weights([np.array([[0.0, 1.0], [1.0, 0.0]], np.float32), np.zeros(2, np.float32)])
  return model


def planted_images(n=12, seed=0):
  """A cross in the top-left quadrant and a square distractor in the bottom-right one."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 0.1, (n, SIZE, SIZE, 1)).astype(np.float32)
  for image in images:
    y, x = rng.integers(1, 5, size=2)
    image[y:y + 3, x:x + 3, 0] += np.clip(CROSS, 0, 1)
    y, x = rng.integers(9, 13, size=2)
    image[y:y + 3, x:x + 3, 0] += 1.0
  return images


def test_grad_cam_puts_the_mass_on_the_planted_evidence():
  model = ImageModel(detector_cnn())
  images = planted_images()
  quadrant = np.zeros((SIZE, SIZE), bool)
  quadrant[:8, :8] = True
  for method in (GradCam(), GradCam(plus_plus=True)):
    result = method.attribute(model, images, target=1)
    assert result.extras['layer'] == 'detectors' and result.method == 'grad_cam'
    mass = region_mass(result.maps, quadrant)
    print(f'{result.method}: min share of positive mass in the planted quadrant {mass.min():.3f}')
    # Stated measure: at least 70 % of each map's positive mass in the planted quadrant.
    assert mass.min() >= 0.7, (method.name, mass)
  # And the distractor's class looks at the other quadrant.
  other = GradCam().attribute(model, images, target=0)
  assert region_mass(other.maps, quadrant).max() < 0.3


def test_grad_cam_refuses_a_dense_model_by_name():
  inputs = tf_keras.Input((8, 8, 1))
  outputs = tf_keras.layers.Dense(3, activation='softmax')(tf_keras.layers.Flatten()(inputs))
  model = ImageModel(tf_keras.Model(inputs, outputs))
  with pytest.raises(ConfigError, match='Grad-CAM needs a convolutional layer'):
    GradCam().attribute(model, np.zeros((2, 8, 8, 1), np.float32))
  with pytest.raises(ConfigError, match="no layer named 'conv9'"):
    GradCam(layer='conv9').attribute(model, np.zeros((2, 8, 8, 1), np.float32))


def random_cnn(seed=3):
  tf_keras.utils.set_random_seed(seed)
  inputs = tf_keras.Input((SIZE, SIZE, 1))
  x = tf_keras.layers.Conv2D(4, 3, activation='relu', padding='same')(inputs)
  x = tf_keras.layers.MaxPooling2D(2)(x)
  x = tf_keras.layers.Conv2D(8, 3, activation='relu')(x)
  x = tf_keras.layers.Flatten()(x)
  outputs = tf_keras.layers.Dense(3, activation='softmax')(x)
  return tf_keras.Model(inputs, outputs)


def test_integrated_gradients_completeness_on_a_cnn():
  model = ImageModel(random_cnn())
  images = planted_images(8, seed=1)
  result = ImageIntegratedGradients(steps=128, baseline='black').attribute(model, images)
  gap = np.abs(result.prediction - result.baseline_prediction)
  relative = result.completeness_error / np.maximum(gap, 1e-6)
  # Stated tolerance: ReLU kinks make the path integrand piecewise smooth; with 128
  # trapezoid points the error stays under 2 % of |f(x) - f(baseline)|.
  print(f'CNN IG relative completeness error: median {np.median(relative):.4f}, '
        f'max {relative.max():.4f}')
  assert np.median(relative) < 0.02, relative
  assert result.maps.shape == images.shape and result.display.shape == (8, SIZE, SIZE)


def test_image_baselines_and_other_pixel_methods():
  images = planted_images(4)
  blurred = image_baselines('blurred', images, sigma=2.0)
  assert blurred.std() < images.std()
  np.testing.assert_array_equal(image_baselines('noise', images, seed=5),
                                image_baselines('noise', images, seed=5))
  model = ImageModel(random_cnn())
  for method in (ImageSmoothGrad(num_samples=4), ImageGradientTimesInput(),
                 ImageIntegratedGradients(steps=8, baseline='blurred')):
    result = method.attribute(model, images)
    assert result.maps.shape == images.shape and np.isfinite(result.maps).all()
  with pytest.raises(ConfigError, match='baseline must be one of'):
    ImageIntegratedGradients(baseline='grey')


def test_tabular_model_is_refused_for_image_methods():
  inputs = tf_keras.Input((4,))
  model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs))
  with pytest.raises(ModelAccessError, match='one rank-4 input'):
    ImageModel(model)
