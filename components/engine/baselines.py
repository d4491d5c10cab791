"""Baselines: what a method compares an example with, for tabular and image models.

A baseline setting (`BaselineSpec`) is a kind name or, for tabular models, a
{feature: value} dict that overrides single features (the others take the
'mean' baseline). `check_baseline` is the one validator of a setting.

Tabular kinds: 'zeros', 'mean', 'median' of the reference split (an input
that is not a float takes its most frequent value). Image kinds: 'black'
(zeros), 'blurred' (a Gaussian blur of the image, sigma in pixels) and
'noise' (uniform over the image's own value range, drawn from the seed and
the example's id, so it does not depend on how examples are batched).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tfx_explain.configurable import ConfigError

BaselineSpec = Union[str, Mapping[str, Any]]
TABULAR_BASELINES = ('zeros', 'mean', 'median')
IMAGE_BASELINES = ('black', 'blurred', 'noise')


def check_baseline(owner: str, baseline: BaselineSpec, image: bool = False,
                   feature_names: Optional[Sequence[str]] = None) -> BaselineSpec:
  """A baseline setting of an image or a tabular method, as the method stores it.

  feature_names, when known (the model's inputs), must include every feature a
  {feature: value} setting names.
  """
  kinds = IMAGE_BASELINES if image else TABULAR_BASELINES
  if isinstance(baseline, Mapping) and not image:
    for name in baseline:
      if not isinstance(name, str):
        raise ConfigError(f'{owner}: baseline keys must be feature names, got {name!r}.')
    if feature_names is not None:
      unknown = sorted(set(baseline) - set(feature_names))
      if unknown:
        raise ConfigError(f'{owner}: baseline names unknown feature(s) {unknown}; '
                          f'model features are {list(feature_names)}.')
    return dict(baseline)
  if isinstance(baseline, Mapping) or baseline not in kinds:
    values = '' if image else ' or a {feature: value} dict'
    raise ConfigError(f'{owner}: baseline must be one of {list(kinds)}{values}, '
                      f'got {baseline!r}.')
  return baseline


def float_baseline(model, reference, baseline: BaselineSpec,
                   owner: str) -> Tuple[np.ndarray, Dict[str, Any]]:
  """(the float inputs' baseline [F_float] float32, every input's baseline value by name)."""
  values = reference.baseline_values(baseline, model.input_names, owner)
  for name in model.float_features:
    try:
      float(values[name])
    except (TypeError, ValueError) as e:
      raise ConfigError(f'{owner}: baseline value for float feature {name!r} is not a '
                        f'number: {values[name]!r}.') from e
  return np.asarray([float(values[n]) for n in model.float_features], np.float32), values


def image_baselines(kind: str, images: np.ndarray, sigma: float = 2.0, seed: int = 0,
                    example_ids: Optional[np.ndarray] = None) -> np.ndarray:
  """Per-example baselines [N, H, W, C]; example_ids (default: positions) key the noise."""
  check_baseline('image baseline', kind, image=True)
  if kind == 'black':
    return np.zeros_like(images)
  if kind == 'blurred':
    from scipy.ndimage import gaussian_filter  # pylint: disable=g-import-not-at-top
    return np.stack([gaussian_filter(image, sigma=(sigma, sigma, 0)) for image in images])
  if example_ids is None:
    example_ids = np.arange(len(images))
  return np.stack([
      np.random.default_rng([seed, int(example_id)]).uniform(image.min(), image.max(),
                                                             image.shape)
      for example_id, image in zip(example_ids, images)]).astype(np.float32)
