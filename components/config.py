"""AttributionConfig: what AttributionGen computes, serialisable to JSON.

It travels to the executor as one JSON string execution parameter (TFX
parameters are scalars), so it must round-trip exactly and reject unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence, Union

from tfx_explain.engine import base
from tfx_explain.engine.base import ConfigError
from tfx_explain.configurable import dataclass_fields_from_json
from tfx_explain.validators import check_choice, check_int


ATTRIBUTION_SPACES = ('raw', 'transformed')


@dataclasses.dataclass
class AttributionConfig:
  """What to explain and how.

  Attributes:
    methods: attribution method instances (IntegratedGradients(), KernelShap(), ...).
    splits: example splits to explain.
    label_key: label feature; needed by PermutationImportance and excluded from
      the attributed features.
    target: 'predicted' (each example's argmax class), or a class index. A
      regressor's single output is explained either way.
    slicing_specs: lists of feature names to slice by; [] is the whole split.
    max_examples_per_split: explain only the first N examples of each split
      (in file order), or all when None.
    baseline_split: split that 'mean'/'median' baselines and the background
      sample come from.
    background_size: rows in the background sample (at least each method's).
    batch_size: examples per engine call.
    signature_name: use this SavedModel signature (dense feature inputs)
      instead of the saved Keras model.
    output_key: output of that signature to explain.
    seed: seed for the background sample.
    attribution_space: 'raw' (default): a model with a Transform layer (its own
      or transform_graph) is explained over the raw features serving parses;
      'transformed': over the model's own inputs (`*_xf`), on Transform's
      transformed_examples.
    image_shape: [height, width, channels] of a model that takes images as one
      flat vector of pixels (TFX's mnist MLP): explained with the image methods.
    tf_threads_per_worker: TensorFlow threads (intra-op and inter-op) in each Beam
      worker process, or None for TensorFlow's default (one per core). With N
      worker processes on N cores, 1 keeps them from oversubscribing the cores.
      It is applied where a process first runs TensorFlow: a process whose
      TensorFlow already runs keeps its thread pools (and says so in the log).
  """
  methods: Sequence[base.AttributionMethod] = dataclasses.field(default_factory=list)
  splits: Sequence[str] = ('eval',)
  label_key: Optional[str] = None
  target: Union[str, int] = base.TARGET_PREDICTED
  slicing_specs: Sequence[Sequence[str]] = ((),)
  max_examples_per_split: Optional[int] = None
  baseline_split: str = 'train'
  background_size: int = 100
  batch_size: int = 256
  signature_name: Optional[str] = None
  output_key: Optional[str] = None
  seed: int = 0
  image_shape: Optional[Sequence[int]] = None
  attribution_space: str = 'raw'
  tf_threads_per_worker: Optional[int] = None

  def __post_init__(self):
    self.methods = list(self.methods)
    if not self.methods:
      raise ConfigError('AttributionConfig: methods is empty; give at least one method, '
                        'e.g. IntegratedGradients().')
    for method in self.methods:
      if not isinstance(method, base.AttributionMethod):
        raise ConfigError(f'AttributionConfig: methods must be method instances such as '
                          f'IntegratedGradients(), got {method!r}.')
    labels = [m.label for m in self.methods]
    duplicates = sorted({l for l in labels if labels.count(l) > 1})
    if duplicates:
      raise ConfigError(f'AttributionConfig: methods share the name(s) {duplicates}; '
                        'give each a distinct key=.')
    if isinstance(self.splits, str):
      raise ConfigError("AttributionConfig: splits must be a list of split names, e.g. ['eval'].")
    self.splits = list(self.splits)
    if not self.splits or not all(isinstance(s, str) and s for s in self.splits):
      raise ConfigError(f'AttributionConfig: splits must be non-empty names, got {self.splits!r}.')
    self.slicing_specs = [list(spec) for spec in self.slicing_specs]
    for spec in self.slicing_specs:
      if not all(isinstance(f, str) and f for f in spec):
        raise ConfigError(f'AttributionConfig: slicing spec {spec!r} must list feature names.')
    if self.max_examples_per_split is not None:
      check_int('AttributionConfig', 'max_examples_per_split',
                              self.max_examples_per_split)
    check_int('AttributionConfig', 'background_size', self.background_size)
    check_int('AttributionConfig', 'batch_size', self.batch_size)
    check_int('AttributionConfig', 'seed', self.seed, minimum=0)
    if self.tf_threads_per_worker is not None:
      self.tf_threads_per_worker = check_int('AttributionConfig', 'tf_threads_per_worker',
                                             self.tf_threads_per_worker)
    check_choice('AttributionConfig', 'attribution_space', self.attribution_space,
                      ATTRIBUTION_SPACES)
    if self.image_shape is not None:
      shape = list(self.image_shape)
      if len(shape) not in (2, 3) or not all(isinstance(d, int) and not isinstance(d, bool)
                                             and d > 0 for d in shape):
        raise ConfigError('AttributionConfig: image_shape must be [height, width] or [height, '
                          f'width, channels] of positive integers, got {self.image_shape!r}.')
      self.image_shape = shape
    if isinstance(self.target, str) and self.target != base.TARGET_PREDICTED:
      raise ConfigError(f"AttributionConfig: target must be 'predicted' or a class index, "
                        f'got {self.target!r}.')
    if isinstance(self.target, bool) or not isinstance(self.target, (str, int)):
      raise ConfigError(f"AttributionConfig: target must be 'predicted' or a class index, "
                        f'got {self.target!r}.')

  def load_model(self, model_path: str, transform_graph: Optional[str] = None,
                 shared: bool = False):
    """The model as these settings explain it: signature, head, space and image layout."""
    from tfx_explain.engine.loading import load_model_function  # pylint: disable=g-import-not-at-top
    return load_model_function(model_path, self.signature_name, self.output_key, shared=shared,
                               transform_graph=transform_graph,
                               with_transform=self.attribution_space == 'raw',
                               image_shape=self.image_shape)

  @property
  def effective_background_size(self) -> int:
    sizes = [getattr(m, 'background_size', 0) for m in self.methods]
    return max([self.background_size] + sizes)

  def to_json(self) -> str:
    data = dataclasses.asdict(self)
    data['methods'] = [m.to_json_dict() for m in self.methods]
    return json.dumps(data, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'AttributionConfig':
    data = dataclass_fields_from_json(cls, text)
    data['methods'] = [base.method_from_json_dict(m) for m in data.get('methods', [])]
    return cls(**data)

