"""Image attributions: Grad-CAM / Grad-CAM++ and per-pixel gradient methods.

Any model whose input is one rank-4 tensor (batch, height, width, channels)
works, through an `image_model.ImageModel`. Image methods take the same call
as every method, `attribute(model, features, ..., target=, example_ids=)`,
with features the images [N, H, W, C] or {input_name: images}. Pixel methods
(Integrated Gradients, SmoothGrad, gradient x input) return raw maps shaped
like the input; `display` sums them over channels. Grad-CAM returns one map
per example at input resolution. As with tabular models, every interpolation
point / noise sample of a whole batch goes through one compiled gradient
call, chunked by max_rows. Image baselines are described in `baselines.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfx_explain.configurable import ConfigError
from tfx_explain.engine.adapters import call_keras
from tfx_explain.engine.base import (AttributionMethod, AttributionResult, content_example_ids,
                                     resolve_targets)
from tfx_explain.engine.baselines import check_baseline, image_baselines
from tfx_explain.engine.adaptive_paths import refine_paths
from tfx_explain.engine.gradients import AUTO, check_steps, integration_nodes
from tfx_explain.engine.image_model import ImageModel
from tfx_explain.engine.model import ConcreteCall
from tfx_explain.validators import check_choice, check_int, check_number

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


def region_mass(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Share of each map's positive mass inside a boolean [H, W] region."""
  positive = np.clip(maps.sum(axis=-1) if maps.ndim == 4 else maps, 0, None)
  total = positive.reshape(len(positive), -1).sum(axis=1)
  inside = (positive * mask[None]).reshape(len(positive), -1).sum(axis=1)
  return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


@dataclasses.dataclass(kw_only=True)
class ImageAttribution(AttributionResult):
  """An AttributionResult whose per-example values are maps over the image.

  `attributions` holds each map's regional totals (`region_feature_names`:
  the whole map, then its four quadrants), the per-example scalars tables and
  checks read; `maps` the maps themselves.
  """
  maps: np.ndarray                    # [N, H, W, C] raw (Grad-CAM: [N, H, W, 1])

  @property
  def display(self) -> np.ndarray:
    """[N, H, W]: summed over channels, for overlays."""
    return self.maps.sum(axis=-1)

  def attribution_totals(self) -> np.ndarray:
    return self.maps.reshape(len(self.maps), -1).sum(axis=1)


class ImageMethod(AttributionMethod):
  """Base of image methods: `_attribute` gets the images [N, H, W, C] as its features."""
  image_method = True

  def _inputs(self, model, features, reference):
    if not isinstance(model, ImageModel):
      raise ConfigError(f'{type(self).__name__} explains image models (one rank-4 input, or '
                        f'image_shape set); got a {type(model).__name__}.')
    images = model.check(features)
    return images, reference, len(images)

  def _image_result(self, model: ImageModel, maps: np.ndarray, targets: np.ndarray,
                    prediction: np.ndarray, baseline_prediction: Optional[np.ndarray] = None,
                    extras: Optional[Dict[str, object]] = None) -> ImageAttribution:
    """baseline_prediction None: the method compares with no baseline (NaN)."""
    n = len(maps)
    return ImageAttribution(
        method=self.label, feature_names=region_feature_names(model.input_name),
        attributions=region_totals(maps.sum(axis=-1)), target=targets,
        prediction=np.asarray(prediction, np.float64),
        baseline_prediction=(np.full(n, np.nan) if baseline_prediction is None else
                             np.asarray(baseline_prediction, np.float64)),
        output_kind=model.output_kind, extras=extras or {}, maps=maps)


def _targets_and_prediction(method: AttributionMethod, model: ImageModel, images: np.ndarray,
                            target):
  outputs = method.outputs_at(model, images)
  targets = resolve_targets(model, outputs, target)
  return targets, outputs[np.arange(len(images)), targets]


class ImageIntegratedGradients(ImageMethod):
  """Integrated Gradients over pixels, from a black, blurred or noise baseline.

  steps='auto' places the points per image as `IntegratedGradients` does
  (`adaptive_paths`): until the relative completeness error is at most
  `tolerance`, or `max_steps` gradient points; `result.steps` records the
  points each image used, with a fixed number of points too.
  """
  name = 'image_integrated_gradients'

  def __init__(self, steps: Union[int, str] = 64, baseline: str = 'black',
               rule: str = 'trapezoid', blur_sigma: float = 2.0, seed: int = 0,
               tolerance: float = 1e-3, initial_steps: int = 5, max_steps: int = 1024,
               key: Optional[str] = None):
    owner = 'ImageIntegratedGradients'
    self.key = key
    self.steps, self.rule, self.tolerance, self.initial_steps, self.max_steps = check_steps(
        owner, steps, rule, tolerance, initial_steps, max_steps)
    self.baseline = check_baseline(owner, baseline, image=True)
    self.blur_sigma, self.seed = blur_sigma, seed

  def _attribute(self, model, features, reference, target, labels, example_ids):
    images = features
    targets, prediction = _targets_and_prediction(self, model, images, target)
    baselines = image_baselines(self.baseline, images, self.blur_sigma, self.seed, example_ids)
    if self.steps == AUTO:
      integrals = refine_paths(model, images, baselines, [], targets, self.rule, self.tolerance,
                               self.initial_steps, self.max_steps)
      maps = (images - baselines).astype(np.float64) * integrals.mean_gradients
      # The ends of the refined path, as its completeness was judged.
      result = self._image_result(model, maps, targets, integrals.end, integrals.start,
                                  {'baseline': self.baseline})
      result.steps = integrals.steps
      return result
    alphas, weights = integration_nodes(self.steps, self.rule)
    outputs, mean_grads, _, _ = model.path_gradients(images, baselines, alphas, weights, [],
                                                     targets)
    maps = (images - baselines).astype(np.float64) * mean_grads
    base_pred = (outputs[:, 0] if alphas[0] == 0.0 else
                 model.predict(baselines)[np.arange(len(images)), targets])
    result = self._image_result(model, maps, targets, prediction, base_pred,
                                {'baseline': self.baseline})
    # The path pass appends x as a point (weight 0) when the rule's grid lacks it.
    result.steps = np.full(len(images), len(alphas) + int(not (alphas == 1.0).any()), np.int64)
    return result


class ImageSmoothGrad(ImageMethod):
  """SmoothGrad over pixels: noise std = noise_level x the image's value range.

  The noise samples depend on the seed only, the same for every image, so the
  maps do not depend on how images are batched.
  """
  name = 'image_smoothgrad'
  value_kind = 'gradient'

  def __init__(self, num_samples: int = 32, noise_level: float = 0.15,
               multiply_by_input: bool = False, seed: int = 0, key: Optional[str] = None):
    self.key = key
    self.num_samples = check_int('ImageSmoothGrad', 'num_samples', num_samples)
    self.noise_level = check_number('ImageSmoothGrad', 'noise_level', noise_level, low=0)
    self.multiply_by_input, self.seed = bool(multiply_by_input), seed

  def _attribute(self, model, features, reference, target, labels, example_ids):
    images = features
    targets, prediction = _targets_and_prediction(self, model, images, target)
    n, s = len(images), self.num_samples
    scale = self.noise_level * (images.reshape(n, -1).max(axis=1) -
                                images.reshape(n, -1).min(axis=1))
    noise = np.random.default_rng(self.seed).standard_normal((s,) + images.shape[1:])
    points = (images[:, None] + noise[None].astype(np.float32) *
              scale[:, None, None, None, None].astype(np.float32))
    _, grads = model.target_gradients(points.reshape((n * s,) + images.shape[1:]), [],
                                      np.repeat(targets, s))
    maps = grads.reshape((n, s) + images.shape[1:]).astype(np.float64).mean(axis=1)
    if self.multiply_by_input:
      maps = maps * images
    return self._image_result(model, maps, targets, prediction)


class ImageGradientTimesInput(ImageMethod):
  """Gradient x pixel value."""
  name = 'image_gradient_times_input'

  def __init__(self, key: Optional[str] = None):
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    images = features
    targets = resolve_targets(model, self.outputs_at(model, images), target)
    outputs, grads = model.target_gradients(images, [], targets)
    return self._image_result(model, grads.astype(np.float64) * images, targets, outputs)


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


GRAD_CAM_SCORES = ('logit', 'output')
# Heads whose output is a squashed score: Grad-CAM differentiates what they squash.
_SQUASHING = ('softmax', 'softmax_v2', 'sigmoid')
_SQUASHING_OPS = ('nn.softmax', 'math.softmax', 'nn.sigmoid', 'math.sigmoid', 'sigmoid')


def squashing_head(keras_model):
  """(layer, node index, kind) of the layer making the output when it is a softmax/sigmoid.

  kind 'input': the layer is the activation alone (a Softmax or Activation
  layer, a tf.nn.softmax op), so its input is the logit. kind 'own': the
  activation is the layer's own (Dense(..., activation='softmax')). None: the
  head squashes nothing. Raises ConfigError when the output comes out of a
  nested model whose own head squashes it (its logit is not reachable).
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  layer, node_index, _ = keras_model.outputs[0]._keras_history  # pylint: disable=protected-access
  if hasattr(layer, 'layers') and getattr(layer, 'outputs', None):   # a nested model
    if squashing_head(layer) is not None:
      raise ConfigError(
          f"GradCam(score='logit'): the model's output comes from the nested model "
          f'{layer.name!r}, whose head is a softmax/sigmoid; its pre-activation score cannot be '
          "reached from the outer model. Pass score='output' to differentiate the probability.")
    return None
  if isinstance(layer, tf_keras.layers.Softmax) or getattr(layer, 'symbol', None) in _SQUASHING_OPS:
    return layer, node_index, 'input'
  activation = getattr(getattr(layer, 'activation', None), '__name__', '')
  if activation in _SQUASHING:
    return layer, node_index, 'input' if isinstance(layer, tf_keras.layers.Activation) else 'own'
  return None


def _pre_activation(layer, kind: str, head_input):
  """The head's logits from its input tensor (inside the Grad-CAM trace)."""
  if kind == 'input':
    return head_input
  # The layer's own computation with its activation made linear for this one
  # call, which is traced once: the graph keeps reading the layer's weights.
  import tf_keras  # pylint: disable=g-import-not-at-top
  squash = layer.activation
  layer.activation = tf_keras.activations.linear
  try:
    return layer(head_input)
  finally:
    layer.activation = squash


class GradCam(ImageMethod):
  """Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018).

  Channel weights: spatial mean of d score / d activation (Grad-CAM), or the
  alpha-weighted positive gradients of Grad-CAM++ (using the exponential-score
  closed form); map = ReLU(sum_k w_k A_k), bilinearly resized to the input.
  `normalize` scales each map to a maximum of 1.

  score: 'logit' (default) differentiates the class score before the final
  softmax or sigmoid, as both papers prescribe: a probability's gradient mixes
  in the other classes' (softmax) or shrinks where it saturates (sigmoid). A
  head that is already linear is its own logit. 'output' differentiates the
  model output as it is (the probability). The reported prediction is the
  model output either way.
  """
  name = 'grad_cam'
  value_kind = 'activation_map'

  def __init__(self, layer: Optional[str] = None, plus_plus: bool = False,
               normalize: bool = True, score: str = 'logit', key: Optional[str] = None):
    self.layer, self.plus_plus, self.normalize = layer, bool(plus_plus), bool(normalize)
    self.score = check_choice('GradCam', 'score', score, GRAD_CAM_SCORES)
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
    head = squashing_head(model.model) if self.score == 'logit' else None
    outputs = [layer.output, model.model.outputs[0]]
    if head is not None:
      head_input = head[0].get_input_at(head[1])
      if isinstance(head_input, (list, tuple, dict)):
        raise ConfigError(
            f"GradCam(score='logit'): the final layer {head[0].name!r} takes several inputs, so "
            "its pre-activation score is not one tensor. Pass score='output'.")
      outputs.append(head_input)
    import tf_keras  # pylint: disable=g-import-not-at-top
    both = tf_keras.Model(model.model.inputs, outputs)
    height, width = model.image_shape[:2]
    plus_plus = self.plus_plus

    def by_target(values, targets):
      values = tf.reshape(tf.cast(values, tf.float32), [tf.shape(targets)[0], -1])
      return tf.gather(values, targets, axis=1, batch_dims=1)

    @tf.function(input_signature=[tf.TensorSpec((None,) + model.image_shape, tf.float32),
                                  tf.TensorSpec([None], tf.int32)], autograph=False)
    def cam_fn(images, targets):
      with tf.GradientTape() as tape:
        values = call_keras(both, images)
        activations, prediction = values[0], by_target(values[1], targets)
        score = prediction if head is None else by_target(
            _pre_activation(head[0], head[2], values[2]), targets)
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
      return prediction, resized

    self._cache[key] = (ConcreteCall(cam_fn), layer_name)
    return self._cache[key]

  def _attribute(self, model, features, reference, target, labels, example_ids):
    images = features
    targets = resolve_targets(model, self.outputs_at(model, images), target)
    cam_fn, layer_name = self._function(model)
    scores, maps = [], []
    for rows in model.row_chunks(len(images)):
      score, cam = cam_fn(images[rows], tf.constant(targets[rows], tf.int32))
      scores.append(score.numpy())
      maps.append(cam.numpy())
    maps = np.concatenate(maps).astype(np.float64)
    if self.normalize:
      peak = maps.reshape(len(maps), -1).max(axis=1)
      maps = maps / np.where(peak > 0, peak, 1.0)[:, None, None, None]
    return self._image_result(model, maps, targets, np.concatenate(scores), None,
                              {'layer': layer_name, 'score': self.score})


def explain_images(model, images, methods: Sequence[ImageMethod], target='predicted',
                   example_ids: Optional[np.ndarray] = None) -> Dict[str, ImageAttribution]:
  """Runs several image methods on the same images; a Keras model is wrapped in ImageModel.

  example_ids default to a hash of each image's pixels (`content_example_ids`),
  so noise baselines follow the image, not its position in the call.
  """
  image_model = model if isinstance(model, ImageModel) else ImageModel(model)
  if example_ids is None:
    example_ids = content_example_ids(image_model, image_model.check(images))
  return {method.label: method.attribute(image_model, images, target=target,
                                         example_ids=example_ids)
          for method in methods}
