"""Image methods: Grad-CAM finds planted evidence, IG completeness on a CNN, clear refusals."""

import json

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
from tfx_explain.engine.base import AttributionMethod, AttributionResult
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


def test_noise_baseline_of_an_image_is_the_same_alone_and_inside_any_batch():
  model = ImageModel(random_cnn())
  # Four images with clearly different value ranges, so a batch-wide range would differ
  # from each image's own; the image explained sits at position 2 of the batch.
  scales = np.array([5.0, 0.3, 1.0, 2.0], np.float32)
  offsets = np.array([-2.0, 0.5, 0.0, 1.0], np.float32)
  batch = planted_images(4, seed=6) * scales[:, None, None, None] + \
      offsets[:, None, None, None]
  image, image_id, seed = batch[2:3], 42, 5
  method = ImageIntegratedGradients(steps=8, baseline='noise', seed=seed)
  alone = method.attribute(model, image, example_ids=[image_id])
  inside = method.attribute(model, batch, example_ids=[7, 19, image_id, 3])
  np.testing.assert_allclose(inside.maps[2], alone.maps[0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(inside.baseline_prediction[2], alone.baseline_prediction[0],
                             rtol=1e-6)
  # The baseline is uniform noise over this image's own range, drawn from (seed, id):
  # the model's output there is the method's baseline prediction.
  own = np.random.default_rng([seed, image_id]).uniform(
      image.min(), image.max(), image.shape[1:]).astype(np.float32)
  target = inside.target[2]
  np.testing.assert_allclose(inside.baseline_prediction[2],
                             model.predict(own[None])[0, target], rtol=1e-5)
  noise = image_baselines('noise', batch, seed=seed, example_ids=[7, 19, image_id, 3])
  for k in range(4):
    low, high = batch[k].min(), batch[k].max()
    # Inside the image's range and, over 256 uniform pixels, filling all but a few % of it.
    assert low <= noise[k].min() and noise[k].max() <= high
    assert noise[k].min() - low < 0.05 * (high - low) and high - noise[k].max() < 0.05 * (high - low)


def test_explain_images_keys_noise_baselines_on_the_images_themselves():
  model = random_cnn()
  images = planted_images(4, seed=7)
  method = ImageIntegratedGradients(steps=4, baseline='noise', seed=2)
  whole = explain_images(model, images, [method])[method.label]
  last = explain_images(model, images[3:], [method])[method.label]
  np.testing.assert_allclose(last.maps[0], whole.maps[3], rtol=1e-6, atol=1e-7)


def head_cnn(activation, units, seed=5):
  """Conv layers, then a Dense head with the given activation (None: linear)."""
  tf_keras.utils.set_random_seed(seed)
  inputs = tf_keras.Input((SIZE, SIZE, 1))
  x = tf_keras.layers.Conv2D(4, 3, activation='relu', padding='same', name='conv')(inputs)
  x = tf_keras.layers.MaxPooling2D(2)(x)
  x = tf_keras.layers.Flatten()(x)
  outputs = tf_keras.layers.Dense(units, activation=activation, name='head')(x)
  return tf_keras.Model(inputs, outputs)


def linear_twin(model, units):
  """The same network and weights with a linear head: its output is the model's logits."""
  twin = head_cnn(None, units)
  twin.set_weights(model.get_weights())
  return twin


def grad_cam_by_hand(keras_model, images, targets, normalize=True):
  """Selvaraju et al.: w_k = mean over positions of d y / d A_k, map = ReLU(sum_k w_k A_k)."""
  both = tf_keras.Model(keras_model.inputs,
                        [keras_model.get_layer('conv').output, keras_model.output])
  with tf.GradientTape() as tape:
    activations, outputs = both(tf.constant(images))
    score = tf.reduce_sum(tf.gather(outputs, targets, axis=1, batch_dims=1))
  grads = tape.gradient(score, activations).numpy().astype(np.float64)
  activations = activations.numpy().astype(np.float64)
  cam = np.maximum((activations * grads.mean(axis=(1, 2))[:, None, None, :]).sum(axis=-1), 0)
  maps = tf.image.resize(cam[..., None].astype(np.float32), images.shape[1:3],
                         method='bilinear').numpy().astype(np.float64)
  if normalize:
    maps = maps / np.maximum(maps.reshape(len(maps), -1).max(axis=1), 1e-30)[:, None, None, None]
  return maps


def test_grad_cam_differentiates_the_logit_of_a_softmax_head():
  model = head_cnn('softmax', 3)
  images = planted_images(5, seed=8)
  logit = GradCam().attribute(ImageModel(model), images)
  targets = logit.target
  expected = grad_cam_by_hand(linear_twin(model, 3), images, targets)
  np.testing.assert_allclose(logit.maps, expected, rtol=1e-4, atol=1e-5)
  assert logit.extras['score'] == 'logit'
  # The prediction reported is still the model's output, the probability.
  np.testing.assert_allclose(logit.prediction, model.predict(images, verbose=0)[
      np.arange(5), targets], rtol=1e-6)
  # score='output' differentiates the probability, as Grad-CAM of the model itself.
  output = GradCam(score='output').attribute(ImageModel(model), images)
  np.testing.assert_allclose(output.maps, grad_cam_by_hand(model, images, targets),
                             rtol=1e-4, atol=1e-5)
  assert np.abs(output.maps - logit.maps).max() > 0.05


def test_grad_cam_differentiates_the_logit_of_a_sigmoid_head():
  model = head_cnn('sigmoid', 1)
  images = planted_images(5, seed=9)
  targets = np.zeros(5, np.int32)
  logit = GradCam(normalize=False).attribute(ImageModel(model), images)
  expected = grad_cam_by_hand(linear_twin(model, 1), images, targets, normalize=False)
  np.testing.assert_allclose(logit.maps, expected, rtol=1e-4, atol=1e-6)
  # d sigmoid(z) / dA = p (1 - p) dz / dA: the probability's map is the logit's scaled.
  output = GradCam(score='output', normalize=False).attribute(ImageModel(model), images)
  p = model.predict(images, verbose=0)[:, 0].astype(np.float64)
  np.testing.assert_allclose(output.maps, logit.maps * (p * (1 - p))[:, None, None, None],
                             rtol=1e-4, atol=1e-7)
  assert np.abs(output.maps - logit.maps).max() > 1e-3
  # Grad-CAM++'s exponential closed form is not scale-free: normalised maps differ too.
  plus = [GradCam(plus_plus=True, score=s).attribute(ImageModel(model), images).maps
          for s in ('logit', 'output')]
  assert np.abs(plus[0] - plus[1]).max() > 1e-3


def test_grad_cam_score_on_a_linear_head_an_activation_layer_and_in_config():
  model = head_cnn(None, 3)
  images = planted_images(3, seed=10)
  np.testing.assert_array_equal(GradCam().attribute(ImageModel(model), images).maps,
                                GradCam(score='output').attribute(ImageModel(model), images).maps)
  # A separate Softmax layer: the logit is its input.
  softmax = tf_keras.Model(model.inputs, tf_keras.layers.Softmax()(model.output))
  np.testing.assert_allclose(GradCam().attribute(ImageModel(softmax), images).maps,
                             GradCam().attribute(ImageModel(model), images).maps,
                             rtol=1e-5, atol=1e-6)
  method = GradCam(score='output', plus_plus=True)
  assert method.get_config()['score'] == 'output'
  again = AttributionMethod.from_json_dict(json.loads(json.dumps(method.to_json_dict())))
  assert again == method and again.score == 'output' and GradCam().score == 'logit'
  with pytest.raises(ConfigError, match='score must be one of'):
    GradCam(score='probability')


def test_grad_cam_says_when_a_softmax_heads_logit_cannot_be_found():
  tf_keras.utils.set_random_seed(1)
  inputs = tf_keras.Input((SIZE, SIZE, 1))
  x = tf_keras.layers.Flatten()(tf_keras.layers.Conv2D(2, 3, name='conv')(inputs))
  head = tf_keras.Sequential([tf_keras.layers.Dense(3, activation='softmax')], name='classifier')
  model = ImageModel(tf_keras.Model(inputs, head(x)))
  images = planted_images(2)
  with pytest.raises(ConfigError, match="score='output'"):
    GradCam().attribute(model, images)
  assert GradCam(score='output').attribute(model, images).maps.shape == (2, SIZE, SIZE, 1)


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
