"""Image models as `ModelFunction`s: one input, an image, whose points are whole images.

An `ImageModel` takes [N, H, W, C] float images (or {input_name: images}), so
`predict`, `target_gradients` and `path_gradients` are ModelFunction's own
compiled, chunked functions with points of shape (H, W, C) and no other
columns. `FlatImageModel` views a model on a flat pixel vector the same way.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfx_explain.configurable import ConfigError
from tfx_explain.engine.adapters import call_keras, keras_output_kind
from tfx_explain.engine.base import resolve_targets
from tfx_explain.engine.model import DEFAULT_MAX_ROWS, ModelAccessError, ModelFunction


def is_image_model(keras_model) -> bool:
  inputs = getattr(keras_model, 'inputs', None) or []
  return len(inputs) == 1 and inputs[0].shape.rank == 4


class ImageModel(ModelFunction):
  """A Keras model with one rank-4 float input, batched and differentiable."""

  autograph = False   # see adapters.call_keras

  def __init__(self, keras_model, output_kind: Optional[str] = None,
               max_rows: int = DEFAULT_MAX_ROWS):
    if not is_image_model(keras_model):
      shapes = [tuple(t.shape) for t in getattr(keras_model, 'inputs', None) or []]
      raise ModelAccessError(f'Image attribution needs a model with one rank-4 input '
                             f'(batch, height, width, channels); this one has inputs {shapes}.')
    self.model = keras_model
    [tensor] = keras_model.inputs
    names = getattr(keras_model, 'input_names', None) or [tensor.name.split(':')[0]]
    out_shape = keras_model.outputs[0].shape
    num_outputs = int(out_shape[-1]) if out_shape.rank and out_shape.rank > 1 else 1
    self._init_image(names[0], tuple(int(d) for d in tensor.shape[1:]), num_outputs,
                     output_kind or keras_output_kind(keras_model, num_outputs), max_rows)

  def _init_image(self, input_name: str, image_shape: Sequence[int], num_outputs: int,
                  output_kind: str, max_rows: int):
    super().__init__([input_name], {input_name: tf.float32}, {input_name: 4}, output_kind,
                     num_outputs, max_rows)
    self.input_name = input_name
    self.image_shape: Tuple[int, ...] = tuple(image_shape)

  # The image is one float input, and gradients reach it whole.
  @property
  def float_features(self):
    return [self.input_name]

  @property
  def point_shape(self) -> Tuple[int, ...]:
    return self.image_shape

  def _forward(self, points, others):
    del others   # an image model has no other inputs
    outputs = tf.cast(call_keras(self.model, points), tf.float32)
    return outputs if outputs.shape.rank == 2 else tf.reshape(outputs, [-1, 1])

  def element_features(self, features):
    return features

  def check(self, images) -> np.ndarray:
    """[N, H, W, C] float32 images from an array ([N, H, W] for one channel) or a features dict."""
    if isinstance(images, Mapping):
      if self.input_name not in images:
        raise ModelAccessError(f'The image input {self.input_name!r} is missing from the '
                               f'features given (got {sorted(images)}).')
      images = images[self.input_name]
    images = np.asarray(images, np.float32)
    if images.ndim == 3 and self.image_shape[-1] == 1:
      images = images[..., None]
    if images.shape[1:] != self.image_shape:
      raise ConfigError(f'Images have shape {images.shape[1:]}; the model takes '
                        f'{self.image_shape}.')
    return images

  def split(self, features):
    return self.check(features), []

  def targets(self, images: np.ndarray, target) -> np.ndarray:
    return resolve_targets(self, self.predict(images), target)


class FlatImageModel(ImageModel):
  """A model on a flat pixel vector (TFX's mnist MLP on 784 floats), seen as images.

  `image_shape` (height, width, channels) says how the vector is laid out; the
  pixel methods then run as on any image model, and maps have that shape.
  Grad-CAM needs a convolution, which such a model does not have.
  """

  def __init__(self, model_function: ModelFunction, image_shape: Sequence[int]):
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
    self._init_image(name, image_shape, model_function.num_outputs, model_function.output_kind,
                     model_function.max_rows)

  def _forward(self, points, others):
    del others
    flat = tf.reshape(points, [-1, int(np.prod(self.image_shape))])
    return self.flat.outputs_of({self.input_name: flat})
