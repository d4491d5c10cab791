"""Image attributions: Grad-CAM / Grad-CAM++ and per-pixel gradient methods.

Any Keras model whose input is one rank-4 tensor (batch, height, width,
channels) works. Pixel methods (Integrated Gradients, SmoothGrad,
gradient x input) return raw maps shaped like the input; `display` sums them
over channels. Grad-CAM returns one map per example at input resolution.
As with tabular models, every interpolation point / noise sample of a whole
batch goes through one compiled gradient call, chunked by max_rows.

Baselines for images: 'black' (zeros), 'blurred' (Gaussian blur of each
image, sigma in pixels) and 'noise' (uniform over the image's value range,
seeded by seed and the example's position in the batch).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfx_explain.configurable import ConfigError
from tfx_explain.engine.base import AttributionMethod, resolve_targets
from tfx_explain.engine.gradients import integration_nodes
from tfx_explain.engine.model import (DEFAULT_MAX_ROWS, ModelAccessError, _ConcreteCall,
                                      _output_kind_of_keras, call_keras)

IMAGE_BASELINES = ('black', 'blurred', 'noise')


@dataclasses.dataclass
class ImageAttribution:
  method: str
  maps: np.ndarray                    # [N, H, W, C] raw (Grad-CAM: [N, H, W, 1])
  target: np.ndarray                  # [N]
  prediction: np.ndarray              # [N]
  baseline_prediction: np.ndarray     # [N] (NaN where the method has no baseline)
  completeness_error: Optional[np.ndarray] = None
  output_kind: str = ''
  extras: Dict[str, object] = dataclasses.field(default_factory=dict)
  value_kind: str = 'attribution'

  @property
  def display(self) -> np.ndarray:
    """[N, H, W]: summed over channels, for overlays."""
    return self.maps.sum(axis=-1)


class ImageModel:
  """A Keras model with one rank-4 float input, batched and differentiable."""

  def __init__(self, keras_model, output_kind: Optional[str] = None,
               max_rows: int = DEFAULT_MAX_ROWS):
    inputs = getattr(keras_model, 'inputs', None) or []
    if len(inputs) != 1 or inputs[0].shape.rank != 4:
      shapes = [tuple(t.shape) for t in inputs]
      raise ModelAccessError(f'Image attribution needs a model with one rank-4 input '
                             f'(batch, height, width, channels); this one has inputs {shapes}.')
    self.model = keras_model
    names = getattr(keras_model, 'input_names', None) or [inputs[0].name.split(':')[0]]
    out_shape = keras_model.outputs[0].shape
    num_outputs = int(out_shape[-1]) if out_shape.rank and out_shape.rank > 1 else 1
    self._compile(names[0], tuple(int(d) for d in inputs[0].shape[1:]), num_outputs,
                  output_kind or _output_kind_of_keras(keras_model, num_outputs), max_rows)

  def _compile(self, input_name: str, image_shape, num_outputs: int, output_kind: str,
               max_rows: int):
    self.input_name = input_name
    self.image_shape = tuple(image_shape)
    self.num_outputs = num_outputs
    self.output_kind = output_kind
    self.max_rows = max_rows
    spec = tf.TensorSpec((None,) + self.image_shape, tf.float32)
    # autograph=False: see model.call_keras.

    @tf.function(input_signature=[spec], autograph=False)
    def predict_fn(images):
      return self._outputs(images)

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)], autograph=False)
    def grad_fn(images, targets):
      with tf.GradientTape() as tape:
        tape.watch(images)
        selected = tf.gather(self._outputs(images), targets, axis=1, batch_dims=1)
        total = tf.reduce_sum(selected)
      return selected, tape.gradient(total, images)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None], tf.float32),
                                  tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32)],
                 autograph=False)
    def path_fn(images, baselines, alphas, weights, targets):
      n, m = tf.shape(images)[0], tf.shape(alphas)[0]
      shape = tf.concat([[n * m], tf.shape(images)[1:]], axis=0)
      a = tf.reshape(alphas, [1, -1, 1, 1, 1])
      points = tf.reshape(baselines[:, None] + a * (images - baselines)[:, None], shape)
      with tf.GradientTape() as tape:
        tape.watch(points)
        selected = tf.gather(self._outputs(points), tf.repeat(targets, m), axis=1, batch_dims=1)
        total = tf.reduce_sum(selected)
      grads = tf.reshape(tape.gradient(total, points),
                         tf.concat([[n, m], tf.shape(images)[1:]], axis=0))
      mean_grads = tf.reduce_sum(grads * tf.reshape(weights, [1, -1, 1, 1, 1]), axis=1)
      return tf.reshape(selected, [n, m]), mean_grads

    self._predict_fn, self._grad_fn, self._path_fn = (
        _ConcreteCall(predict_fn), _ConcreteCall(grad_fn), _ConcreteCall(path_fn))

  def _outputs(self, images):
    outputs = tf.cast(call_keras(self.model, images), tf.float32)
    return outputs if outputs.shape.rank == 2 else tf.reshape(outputs, [-1, 1])

  def _chunks(self, n: int, rows_per_example: int = 1):
    step = max(1, self.max_rows // max(1, rows_per_example))
    for start in range(0, n, step):
      yield slice(start, min(n, start + step))

  def predict(self, images: np.ndarray) -> np.ndarray:
    images = self.check(images)
    return np.concatenate([self._predict_fn(images[s]).numpy()
                           for s in self._chunks(len(images))] or
                          [np.zeros((0, self.num_outputs), np.float32)])

  def gradients(self, images: np.ndarray, targets: np.ndarray):
    outs, grads = [], []
    for s in self._chunks(len(images)):
      out, grad = self._grad_fn(images[s], tf.constant(targets[s], tf.int32))
      outs.append(out.numpy())
      grads.append(grad.numpy())
    return np.concatenate(outs), np.concatenate(grads)

  def path_gradients(self, images, baselines, alphas, weights, targets):
    outs, grads = [], []
    for s in self._chunks(len(images), len(alphas)):
      out, grad = self._path_fn(images[s], baselines[s], tf.constant(alphas, tf.float32),
                                tf.constant(weights, tf.float32),
                                tf.constant(targets[s], tf.int32))
      outs.append(out.numpy())
      grads.append(grad.numpy())
    return np.concatenate(outs), np.concatenate(grads)

  def check(self, images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim == 3 and self.image_shape[-1] == 1:
      images = images[..., None]
    if images.shape[1:] != self.image_shape:
      raise ConfigError(f'Images have shape {images.shape[1:]}; the model takes '
                        f'{self.image_shape}.')
    return images

  def targets(self, images: np.ndarray, target) -> np.ndarray:
    return resolve_targets(self, self.predict(images), target)


class FlatImageModel(ImageModel):
  """A model on a flat pixel vector (TFX's mnist MLP on 784 floats), seen as images.

  `image_shape` (height, width, channels) says how the vector is laid out; the
  pixel methods then run as on any image model, and maps have that shape.
  Grad-CAM needs a convolution, which such a model does not have.
  """

  def __init__(self, model_function, image_shape):
    vectors = getattr(model_function, 'vector_inputs', {})
    if len(model_function.model_inputs) != 1 or len(vectors) != 1:
      raise ModelAccessError(
          f'image_shape {list(image_shape)} was given, but the model takes '
          f'{model_function.model_inputs}; a flat image model takes one vector of pixels.')
    [(name, size)] = vectors.items()
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) == 2:
      image_shape += (1,)
    if int(np.prod(image_shape)) != size:
      raise ConfigError(f'image_shape {list(image_shape)} holds {int(np.prod(image_shape))} '
                        f'values, but the model input {name!r} takes {size}.')
    self.model = None
    self.flat = model_function
    self._compile(name, image_shape, model_function.num_outputs, model_function.output_kind,
                  model_function.max_rows)

  def _outputs(self, images):
    flat = tf.reshape(images, [-1, int(np.prod(self.image_shape))])
    return self.flat._outputs_2d(self.flat._call({self.input_name: flat}))  # pylint: disable=protected-access


def image_baselines(kind: str, images: np.ndarray, sigma: float = 2.0, seed: int = 0):
  """Per-example baselines [N, H, W, C]."""
  if kind == 'black':
    return np.zeros_like(images)
  if kind == 'blurred':
    from scipy.ndimage import gaussian_filter  # pylint: disable=g-import-not-at-top
    return np.stack([gaussian_filter(image, sigma=(sigma, sigma, 0)) for image in images])
  if kind == 'noise':
    low, high = float(images.min()), float(images.max())
    return np.stack([np.random.default_rng([seed, i]).uniform(low, high, image.shape)
                     for i, image in enumerate(images)]).astype(np.float32)
  raise ConfigError(f'Image baseline must be one of {list(IMAGE_BASELINES)}, got {kind!r}.')


def _check_image_baseline(owner, baseline):
  if baseline not in IMAGE_BASELINES:
    raise ConfigError(f'{owner}: baseline must be one of {list(IMAGE_BASELINES)}, '
                      f'got {baseline!r}.')
  return baseline


class ImageMethod(AttributionMethod):
  """Base of image methods: attribute(ImageModel, images [N, H, W, C], target)."""
  image_method = True

  def attribute(self, model, images, target='predicted'):  # pylint: disable=arguments-differ
    raise NotImplementedError


class ImageIntegratedGradients(ImageMethod):
  """Integrated Gradients over pixels, from a black, blurred or noise baseline."""
  name = 'image_integrated_gradients'

  def __init__(self, steps: int = 64, baseline: str = 'black', rule: str = 'trapezoid',
               blur_sigma: float = 2.0, seed: int = 0, key: Optional[str] = None):
    self.key = key
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
      raise ConfigError(f'ImageIntegratedGradients: steps must be an integer >= 2, got {steps!r}.')
    self.steps, self.rule = steps, rule
    self.baseline = _check_image_baseline('ImageIntegratedGradients', baseline)
    self.blur_sigma, self.seed = blur_sigma, seed
    integration_nodes(steps, rule)   # validates the rule

  def attribute(self, model: ImageModel, images, target='predicted') -> ImageAttribution:
    images = model.check(images)
    targets = model.targets(images, target)
    baselines = image_baselines(self.baseline, images, self.blur_sigma, self.seed)
    alphas, weights = integration_nodes(self.steps, self.rule)
    outputs, mean_grads = model.path_gradients(images, baselines, alphas, weights, targets)
    maps = (images - baselines).astype(np.float64) * mean_grads
    prediction = model.predict(images)[np.arange(len(images)), targets].astype(np.float64)
    base_pred = (outputs[:, 0] if alphas[0] == 0.0 else
                 model.predict(baselines)[np.arange(len(images)), targets]).astype(np.float64)
    error = np.abs(maps.reshape(len(images), -1).sum(axis=1) - (prediction - base_pred))
    return ImageAttribution(self.label, maps, targets, prediction, base_pred, error,
                            model.output_kind, {'baseline': self.baseline})


class ImageSmoothGrad(ImageMethod):
  """SmoothGrad over pixels: noise std = noise_level x the image's value range."""
  name = 'image_smoothgrad'
  value_kind = 'gradient'

  def __init__(self, num_samples: int = 32, noise_level: float = 0.15,
               multiply_by_input: bool = False, seed: int = 0, key: Optional[str] = None):
    self.key = key
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
      raise ConfigError(f'ImageSmoothGrad: num_samples must be >= 1, got {num_samples!r}.')
    self.num_samples, self.noise_level = num_samples, float(noise_level)
    self.multiply_by_input, self.seed = bool(multiply_by_input), seed

  def attribute(self, model: ImageModel, images, target='predicted') -> ImageAttribution:
    images = model.check(images)
    targets = model.targets(images, target)
    n, s = len(images), self.num_samples
    scale = self.noise_level * (images.reshape(n, -1).max(axis=1) -
                                images.reshape(n, -1).min(axis=1))
    noise = np.random.default_rng(self.seed).standard_normal((s,) + images.shape[1:])
    points = (images[:, None] + noise[None].astype(np.float32) *
              scale[:, None, None, None, None].astype(np.float32))
    _, grads = model.gradients(points.reshape((n * s,) + images.shape[1:]), np.repeat(targets, s))
    maps = grads.reshape((n, s) + images.shape[1:]).astype(np.float64).mean(axis=1)
    if self.multiply_by_input:
      maps = maps * images
    prediction = model.predict(images)[np.arange(n), targets].astype(np.float64)
    return ImageAttribution(self.label, maps, targets, prediction, np.full(n, np.nan),
                            None, model.output_kind)


class ImageGradientTimesInput(ImageMethod):
  """Gradient x pixel value."""
  name = 'image_gradient_times_input'

  def __init__(self, key: Optional[str] = None):
    self.key = key

  def attribute(self, model: ImageModel, images, target='predicted') -> ImageAttribution:
    images = model.check(images)
    targets = model.targets(images, target)
    outputs, grads = model.gradients(images, targets)
    return ImageAttribution(self.label, grads.astype(np.float64) * images, targets,
                            outputs.astype(np.float64), np.full(len(images), np.nan), None,
                            model.output_kind)


def find_last_conv_layer(keras_model) -> str:
  """The last layer whose output is a rank-4 feature map."""
  for layer in reversed(keras_model.layers):
    shape = getattr(layer, 'output_shape', None)
    if isinstance(shape, tuple) and len(shape) == 4 and 'Conv' in type(layer).__name__:
      return layer.name
  raise ConfigError(
      'Grad-CAM needs a convolutional layer, and this model has none '
      f'(layers: {[type(l).__name__ for l in keras_model.layers]}). Use IntegratedGradients '
      'or SmoothGrad for models without convolutions, or name a layer with a rank-4 output.')


class GradCam(ImageMethod):
  """Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018).

  Channel weights: spatial mean of d score / d activation (Grad-CAM), or the
  alpha-weighted positive gradients of Grad-CAM++ (using the exponential-score
  closed form); map = ReLU(sum_k w_k A_k), bilinearly resized to the input.
  `normalize` scales each map to a maximum of 1.
  """
  name = 'grad_cam'
  value_kind = 'activation_map'

  def __init__(self, layer: Optional[str] = None, plus_plus: bool = False,
               normalize: bool = True, key: Optional[str] = None):
    self.layer, self.plus_plus, self.normalize = layer, bool(plus_plus), bool(normalize)
    self.key = key
    self._cache = {}

  def _function(self, model: ImageModel):
    if model.model is None:
      raise ConfigError('GradCam needs a convolutional layer; a model on flat pixel vectors has '
                        'none. Use ImageIntegratedGradients, ImageSmoothGrad or '
                        'ImageGradientTimesInput.')
    layer_name = self.layer or find_last_conv_layer(model.model)
    key = (id(model), layer_name)
    if key in self._cache:
      return self._cache[key]
    try:
      layer = model.model.get_layer(layer_name)
    except ValueError as e:
      raise ConfigError(f'GradCam: no layer named {layer_name!r} in the model.') from e
    if len(layer.output.shape) != 4:
      raise ConfigError(f'GradCam: layer {layer_name!r} has output shape {layer.output.shape}; '
                        'Grad-CAM needs a rank-4 feature map.')
    import tf_keras  # pylint: disable=g-import-not-at-top
    both = tf_keras.Model(model.model.inputs, [layer.output, model.model.outputs[0]])
    height, width = model.image_shape[:2]
    plus_plus = self.plus_plus

    @tf.function(input_signature=[tf.TensorSpec((None,) + model.image_shape, tf.float32),
                                  tf.TensorSpec([None], tf.int32)], autograph=False)
    def cam_fn(images, targets):
      with tf.GradientTape() as tape:
        activations, outputs = call_keras(both, images)
        score = tf.gather(tf.cast(outputs, tf.float32), targets, axis=1, batch_dims=1)
        total = tf.reduce_sum(score)
      grads = tape.gradient(total, activations)
      if plus_plus:
        # With score S = exp(Y): dS/dA = S g, second/third derivatives S g^2, S g^3.
        g2, g3 = grads ** 2, grads ** 3
        denominator = 2.0 * g2 + tf.reduce_sum(activations, axis=[1, 2], keepdims=True) * g3
        alpha = tf.math.divide_no_nan(g2, denominator)
        weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=[1, 2])
      else:
        weights = tf.reduce_mean(grads, axis=[1, 2])
      cam = tf.nn.relu(tf.einsum('nhwk,nk->nhw', activations, weights))
      resized = tf.image.resize(cam[..., None], [height, width], method='bilinear')
      return score, resized

    self._cache[key] = (_ConcreteCall(cam_fn), layer_name)
    return self._cache[key]

  def attribute(self, model: ImageModel, images, target='predicted') -> ImageAttribution:
    images = model.check(images)
    targets = model.targets(images, target)
    cam_fn, layer_name = self._function(model)
    scores, maps = [], []
    for s in model._chunks(len(images)):  # pylint: disable=protected-access
      score, cam = cam_fn(images[s], tf.constant(targets[s], tf.int32))
      scores.append(score.numpy())
      maps.append(cam.numpy())
    maps = np.concatenate(maps).astype(np.float64)
    if self.normalize:
      peak = maps.reshape(len(maps), -1).max(axis=1)
      maps = maps / np.where(peak > 0, peak, 1.0)[:, None, None, None]
    return ImageAttribution(self.label, maps, targets,
                            np.concatenate(scores).astype(np.float64),
                            np.full(len(images), np.nan), None, model.output_kind,
                            {'layer': layer_name})


def region_mass(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Share of each map's positive mass inside a boolean [H, W] region."""
  positive = np.clip(maps.sum(axis=-1) if maps.ndim == 4 else maps, 0, None)
  total = positive.reshape(len(positive), -1).sum(axis=1)
  inside = (positive * mask[None]).reshape(len(positive), -1).sum(axis=1)
  return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def explain_images(model, images, methods: Sequence[ImageMethod],
                   target='predicted') -> Dict[str, ImageAttribution]:
  image_model = model if isinstance(model, ImageModel) else ImageModel(model)
  results = {}
  for method in methods:
    result = method.attribute(image_model, images, target)
    result.value_kind = method.value_kind
    results[result.method] = result
  return results


REGIONS = ('top_left', 'top_right', 'bottom_left', 'bottom_right')


def region_feature_names(image_feature: str):
  """Per-example scalar summaries of an image map: its total and its four quadrants."""
  return [image_feature] + [f'{image_feature}/{region}' for region in REGIONS]


def region_totals(display: np.ndarray) -> np.ndarray:
  """[N, H, W] -> [N, 5]: total, then top-left, top-right, bottom-left, bottom-right sums."""
  h, w = display.shape[1] // 2, display.shape[2] // 2
  return np.stack([display.sum(axis=(1, 2)), display[:, :h, :w].sum(axis=(1, 2)),
                   display[:, :h, w:].sum(axis=(1, 2)), display[:, h:, :w].sum(axis=(1, 2)),
                   display[:, h:, w:].sum(axis=(1, 2))], axis=1)


def is_image_model(keras_model) -> bool:
  inputs = getattr(keras_model, 'inputs', None) or []
  return len(inputs) == 1 and inputs[0].shape.rank == 4
