"""Image methods: Grad-CAM finds planted evidence, IG completeness on a CNN, clear refusals."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfx_explain.configurable import ConfigError
from tfx_explain.engine.baselines import image_baselines
from tfx_explain.engine.image import (GradCam, ImageAttribution, ImageGradientTimesInput,
                                      ImageIntegratedGradients, ImageSmoothGrad, explain_images,
                                      region_mass)
from tfx_explain.engine.image_model import ImageModel
from tfx_explain.engine.base import AttributionResult
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


SHAPE = (6, 5, 2)
PIXEL_W = np.random.default_rng(7).normal(size=(2,) + SHAPE).astype(np.float32)   # per class


def linear_image_model():
  """f_k(x) = sum(w_k * x) + b_k for two classes: its input gradient is w_k everywhere."""
  inputs = tf_keras.Input(SHAPE)
  dense = tf_keras.layers.Dense(2)
  model = tf_keras.Model(inputs, dense(tf_keras.layers.Flatten()(inputs)))
  dense.set_weights([PIXEL_W.reshape(2, -1).T, np.array([0.3, -0.2], np.float32)])
  return ImageModel(model)


def quadratic_image_model(a):
  """f(x) = sum(a * x^2) (one output): its input gradient is 2 a x."""
  inputs = tf_keras.Input(SHAPE)
  weights = tf.constant(a)
  squares = tf_keras.layers.Lambda(
      lambda x: tf.reduce_sum(weights * x * x, axis=[1, 2, 3], keepdims=False)[:, None])(inputs)
  return ImageModel(tf_keras.Model(inputs, squares))


def pixel_images(n=5, seed=0):
  return np.random.default_rng(seed).uniform(-1, 2, (n,) + SHAPE).astype(np.float32)


def test_gradient_times_input_on_a_linear_model_is_w_times_x_and_sums_to_f_x_minus_f_0():
  model = linear_image_model()
  images = pixel_images()
  result = ImageGradientTimesInput().attribute(model, images, target=1)
  expected = PIXEL_W[1].astype(np.float64)[None] * images.astype(np.float64)
  np.testing.assert_array_equal(result.maps, expected)
  outputs = model.predict(images)[:, 1].astype(np.float64)
  at_zero = model.predict(np.zeros_like(images))[:, 1].astype(np.float64)
  np.testing.assert_allclose(result.maps.reshape(len(images), -1).sum(axis=1),
                             outputs - at_zero, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(result.prediction, outputs)
  assert isinstance(result, AttributionResult) and result.value_kind == 'attribution'
  # The regional totals it reports are sums of the map.
  np.testing.assert_allclose(result.attributions[:, 0], result.display.sum(axis=(1, 2)))
  np.testing.assert_allclose(result.attributions[:, 1:].sum(axis=1), result.attributions[:, 0])


@pytest.mark.parametrize('noise_level', [0.0, 0.2, 3.0])
def test_smoothgrad_on_a_linear_model_is_its_gradient_for_any_noise(noise_level):
  model = linear_image_model()
  images = pixel_images()
  result = ImageSmoothGrad(num_samples=7, noise_level=noise_level, seed=4).attribute(
      model, images, target=0)
  np.testing.assert_array_equal(result.maps, np.broadcast_to(PIXEL_W[0], images.shape))
  assert result.value_kind == 'gradient' and result.completeness_error is None
  times_input = ImageSmoothGrad(num_samples=7, noise_level=noise_level, seed=4,
                                multiply_by_input=True).attribute(model, images, target=0)
  np.testing.assert_array_equal(times_input.maps,
                                PIXEL_W[0].astype(np.float64)[None] * images)


def test_smoothgrad_on_a_quadratic_model_averages_the_gradient_over_its_seeded_noise():
  rng = np.random.default_rng(2)
  a = rng.normal(size=SHAPE).astype(np.float32)
  model = quadratic_image_model(a)
  images = pixel_images(4, seed=3)
  samples, level, seed = 64, 0.1, 11
  result = ImageSmoothGrad(num_samples=samples, noise_level=level, seed=seed).attribute(
      model, images)
  # Brute force with the same draws: noise_s ~ N(0, 1) from the seed, scaled per image by
  # level x its value range; gradient 2 a (x + scale noise_s), averaged over s.
  noise = np.random.default_rng(seed).standard_normal((samples,) + SHAPE)
  scale = level * (images.reshape(4, -1).max(axis=1) - images.reshape(4, -1).min(axis=1))
  noisy = images[:, None] + noise[None] * scale[:, None, None, None, None]
  expected = (2.0 * a[None, None] * noisy).mean(axis=1)
  np.testing.assert_allclose(result.maps, expected, rtol=1e-5, atol=1e-5)
  # Its expectation is the noiseless gradient 2 a x: per pixel the mean of `samples` draws
  # has standard deviation 2 |a| scale / sqrt(samples); all pixels stay within 5 of those.
  spread = 2.0 * np.abs(a)[None] * scale[:, None, None, None] / np.sqrt(samples)
  assert (np.abs(result.maps - 2.0 * a[None] * images) <= 5.0 * spread + 1e-6).all()


def test_image_methods_take_the_images_or_a_features_dict_alike():
  model = ImageModel(random_cnn())
  images = planted_images(3)
  for method in (ImageGradientTimesInput(), GradCam(), ImageIntegratedGradients(steps=4)):
    as_array = method.attribute(model, images)
    as_dict = method.attribute(model, {model.input_name: images, 'other': np.zeros(3)})
    assert isinstance(as_array, ImageAttribution)
    np.testing.assert_array_equal(as_array.maps, as_dict.maps)
    assert as_array.value_kind == method.value_kind


def test_noise_baseline_does_not_depend_on_batching():
  model = ImageModel(random_cnn())
  images = planted_images(6, seed=4)
  ids = np.arange(100, 106)
  whole = image_baselines('noise', images, seed=5, example_ids=ids)
  halves = np.concatenate([image_baselines('noise', images[:3], seed=5, example_ids=ids[:3]),
                           image_baselines('noise', images[3:], seed=5, example_ids=ids[3:])])
  np.testing.assert_array_equal(whole, halves)
  method = ImageIntegratedGradients(steps=8, baseline='noise', seed=5)
  at_once = method.attribute(model, images, example_ids=ids)
  first = method.attribute(model, images[:3], example_ids=ids[:3])
  second = method.attribute(model, images[3:], example_ids=ids[3:])
  np.testing.assert_allclose(at_once.maps, np.concatenate([first.maps, second.maps]),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(at_once.baseline_prediction,
                             np.concatenate([first.baseline_prediction,
                                             second.baseline_prediction]), rtol=1e-6)
  # Each image's noise spans its own value range.
  for image, noise in zip(images, whole):
    assert image.min() <= noise.min() and noise.max() <= image.max()


def test_explain_images_sets_each_methods_value_kind():
  results = explain_images(random_cnn(), planted_images(2),
                           [GradCam(), ImageSmoothGrad(num_samples=2), ImageGradientTimesInput()])
  assert {k: r.value_kind for k, r in results.items()} == {
      'grad_cam': 'activation_map', 'image_smoothgrad': 'gradient',
      'image_gradient_times_input': 'attribution'}


def relative_completeness(result):
  gap = np.abs(result.prediction - result.baseline_prediction)
  return result.completeness_error / np.maximum(gap, 1e-6)


def test_adaptive_integrated_gradients_on_a_cnn_reaches_the_tolerance():
  model = ImageModel(random_cnn())
  # Planted images at different contrasts: paths of different curvature.
  images = planted_images(8, seed=1) * np.linspace(0.5, 4.0, 8, dtype=np.float32)[:, None,
                                                                                 None, None]
  fixed = ImageIntegratedGradients(steps=8, baseline='black').attribute(model, images)
  assert relative_completeness(fixed).max() > 1e-2, 'ReLU kinks: 8 points are not enough'
  assert (fixed.steps == 8).all()
  result = ImageIntegratedGradients(steps='auto', baseline='black', tolerance=1e-3,
                                    max_steps=2048).attribute(model, images)
  print(f'adaptive image IG: points per image {result.steps.tolist()}')
  assert (result.steps < 2048).all() and relative_completeness(result).max() <= 1e-3
  assert len(set(result.steps.tolist())) > 1, 'images of different difficulty'
  # prediction and baseline prediction are the model's outputs at the path's ends.
  outputs = model.predict(images)[np.arange(8), result.target]
  np.testing.assert_allclose(result.prediction, outputs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(result.baseline_prediction,
                             model.predict(np.zeros_like(images))[np.arange(8), result.target],
                             rtol=1e-5, atol=1e-6)
  assert result.maps.shape == images.shape
  capped = ImageIntegratedGradients(steps='auto', tolerance=1e-9, max_steps=16).attribute(
      model, images)
  assert (capped.steps == 16).all()


def test_adaptive_image_integrated_gradients_do_not_depend_on_batching():
  model = ImageModel(random_cnn())
  images = planted_images(6, seed=4)
  ids = np.arange(100, 106)
  method = ImageIntegratedGradients(steps='auto', baseline='noise', seed=5, tolerance=1e-2)
  at_once = method.attribute(model, images, example_ids=ids)
  parts = [method.attribute(model, images[rows], example_ids=ids[rows])
           for rows in (slice(0, 2), slice(2, 6))]
  # Every image converges: one that exhausts max_steps splits intervals whose shares are
  # rounding noise, which may differ between batch shapes.
  assert (at_once.steps < 1024).all()
  np.testing.assert_array_equal(at_once.steps, np.concatenate([p.steps for p in parts]))
  np.testing.assert_allclose(at_once.maps, np.concatenate([p.maps for p in parts]),
                             rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize('kwargs, message', [
    ({'steps': 'auto', 'rule': 'riemann_middle'}, "with steps='auto', rule must be one of"),
    ({'steps': 'auto', 'tolerance': 0}, 'tolerance must be a number > 0'),
    ({'steps': 'auto', 'max_steps': 4}, r'max_steps must be >= initial_steps \(5\)'),
    ({'rule': 'simpson'}, 'rule must be one of'),
])
def test_bad_image_integrated_gradients_options_are_named(kwargs, message):
  with pytest.raises(ConfigError, match=f'ImageIntegratedGradients: {message}'):
    ImageIntegratedGradients(**kwargs)
