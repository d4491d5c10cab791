"""What every attribution method shares: its result type, targets, config I/O.

Each method is a small class with one call for every modality, like Captum's
`attribute()`: `method.attribute(model, features, reference=..., target=...,
labels=..., example_ids=...)`, returning an `AttributionResult`: one value per
(example, feature) plus the prediction and the reference prediction. The base
sets what every method shares: the kind of values (`value_kind`) and, for
attributions that sum to an output difference, the completeness error.
A method implements `_attribute` and is registered by defining its class with
a `name` (and exporting it from `tfx_explain.engine`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Union

import numpy as np

from tfx_explain.configurable import ConfigError, Configurable
from tfx_explain.engine.model import ModelFunction, Features, to_model_column
from tfx_explain.engine.reference import ReferenceStats

Target = Union[str, int, np.ndarray]
TARGET_PREDICTED = 'predicted'


@dataclasses.dataclass
class AttributionResult:
  """Attributions of one method for a batch of N examples over F features."""
  method: str
  feature_names: List[str]
  attributions: np.ndarray            # [N, F] float64; NaN where the method skipped a feature
  target: np.ndarray                  # [N] int: the output index explained
  prediction: np.ndarray              # [N] model output at x for that target
  baseline_prediction: np.ndarray     # [N] output at the reference the method compares with
  completeness_error: Optional[np.ndarray] = None   # [N] |sum(attr) - (pred - baseline_pred)|
  skipped_features: List[str] = dataclasses.field(default_factory=list)
  output_kind: str = ''
  value_kind: str = 'attribution'     # 'attribution', 'gradient' or 'metric_drop'
  extras: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # Sampling estimators: [N, F] standard error of each attribution (NaN where skipped).
  standard_errors: Optional[np.ndarray] = None
  # [N] model evaluations spent per example where a method chooses them (integration
  # points of Integrated Gradients, coalitions of Kernel SHAP); None elsewhere.
  steps: Optional[np.ndarray] = None

  @property
  def num_examples(self) -> int:
    return int(self.attributions.shape[0])

  def attribution_totals(self) -> np.ndarray:
    """[N] sum of each example's attributions, skipped (NaN) features left out."""
    return np.nansum(self.attributions, axis=1)

  def as_dict(self, index: int) -> Dict[str, float]:
    return dict(zip(self.feature_names, self.attributions[index].tolist()))

  def to_dataframe(self):
    import pandas as pd  # pylint: disable=g-import-not-at-top
    frame = pd.DataFrame(self.attributions, columns=self.feature_names)
    frame.insert(0, 'method', self.method)
    frame.insert(1, 'target', self.target)
    frame.insert(2, 'prediction', self.prediction)
    frame.insert(3, 'baseline_prediction', self.baseline_prediction)
    frame.insert(4, 'completeness_error',
                 self.completeness_error if self.completeness_error is not None else np.nan)
    return frame


class AttributionMethod(Configurable):
  """Base class. Subclasses set `name` and implement `_attribute`."""

  kind_key = 'method'
  _registry: ClassVar[Dict[str, type]] = {}
  # Whether the method needs the examples' labels (e.g. permutation importance).
  requires_labels: ClassVar[bool] = False
  # Whether the method needs a background sample (Kernel SHAP, LIME, permutation).
  requires_background: ClassVar[bool] = False
  # Gradient methods attribute float inputs only and skip the others.
  gradient_based: ClassVar[bool] = False
  # 'attribution' (sums to an output difference), 'gradient', 'metric_drop', 'activation_map'.
  value_kind: str = 'attribution'
  # Image methods take an ImageModel and [N, H, W, C] images (or {input_name: images}).
  image_method: ClassVar[bool] = False
  # Whether the method reads the model's outputs at the examples (`outputs_at`), so a
  # caller running several methods on one batch computes them once for all.
  uses_outputs: ClassVar[bool] = True
  # Whether results carry per-attribution standard errors (sampling estimators).
  reports_standard_errors: ClassVar[bool] = False
  # Whether the method reads a decision forest's trees (Tree SHAP) rather than any function.
  requires_forest: ClassVar[bool] = False
  # Whether results are TokenAttributions (words and their scores per example).
  token_method: ClassVar[bool] = False

  @classmethod
  def known(cls, image: Optional[bool] = None) -> List[str]:
    """Registered method names; image=True/False keeps those for image/tabular models."""
    return [c.name for c in method_classes(image)]

  def skipped_features(self, model: ModelFunction) -> List[str]:
    """Inputs this method leaves unattributed (NaN) on this model."""
    return list(model.other_features) if self.gradient_based else []

  @property
  def label(self) -> str:
    """Column/key name for this method; `key` set by the user wins (two IGs, say)."""
    return getattr(self, 'key', None) or self.name

  def refusal(self, model: ModelFunction) -> Optional[str]:
    """Why this method cannot explain `model`, completing "Method(s) [...] ...", or None.

    `attribute` raises it; AttributionGen asks before its pipeline starts.
    """
    if self.gradient_based and not getattr(model, 'differentiable', True):
      return (f'need gradients, and the model is {getattr(model, "description", "a lookup")}, '
              'which has none. Use TreeShap (exact) or a model-agnostic method (KernelShap, '
              'SampledShapley, Lime, PermutationImportance).')
    return None

  # -- computation -----------------------------------------------------------
  def attribute(self, model: ModelFunction, features: Features,
                reference: Optional[ReferenceStats] = None, target: Target = TARGET_PREDICTED,
                labels: Optional[np.ndarray] = None,
                example_ids: Optional[np.ndarray] = None,
                outputs: Optional[np.ndarray] = None) -> AttributionResult:
    """Attributions for a batch of examples.

    Args:
      model: the model as a `ModelFunction`.
      features: feature name -> [N] values (model inputs; extra keys ignored).
      reference: statistics of a reference split (baselines, background). When
        None, they are computed from `features` itself (handy in a notebook).
      target: 'predicted' (argmax class), a class index, or 0 for a regressor.
      labels: [N] labels, for methods that need them.
      example_ids: [N] stable example ids; per-example randomness keys on them.
      outputs: [N, K] the model's outputs at `features`, when the caller has them
        (one forward pass per batch shared by every method that needs f(x)).
    """
    reason = self.refusal(model)
    if reason:
      raise ConfigError(f'Method(s) {[self.label]} {reason}')
    features, reference, n = self._inputs(model, features, reference)
    if example_ids is None:
      example_ids = np.arange(n, dtype=np.int64)
    example_ids = np.asarray(example_ids, np.int64).reshape(-1)
    if len(example_ids) != n:
      raise ConfigError(f'{type(self).__name__}: {len(example_ids)} example ids for {n} '
                        'examples.')
    if self.requires_labels and labels is None:
      raise ConfigError(f'{type(self).__name__} needs labels (set label_key).')
    if outputs is not None:
      outputs = np.asarray(outputs)
      if outputs.shape[0] != n:
        raise ConfigError(f'{type(self).__name__}: outputs for {outputs.shape[0]} examples '
                          f'given with {n} examples.')
    # Read through outputs_at while _attribute runs; a method instance explains one
    # batch at a time (Beam gives each DoFn instance its own methods).
    self._shared_outputs = outputs
    try:
      result = self._attribute(model, features, reference, target, labels, example_ids)
    finally:
      self._shared_outputs = None
    result.value_kind = self.value_kind
    result.completeness_error = self._completeness_error(result)
    return result

  def _inputs(self, model: ModelFunction, features, reference):
    """(features as _attribute takes them, reference, number of examples)."""
    features = model.element_features(features)
    n = _batch_size(model, features)
    if reference is None:
      reference = ReferenceStats.from_features(
          {k: np.asarray(features[k]) for k in model.input_names}, model.input_dtypes)
    return features, reference, n

  def outputs_at(self, model: ModelFunction, features) -> np.ndarray:
    """[N, K] model outputs at the batch's examples: the caller's if given, else predicted."""
    shared = getattr(self, '_shared_outputs', None)
    if shared is not None:
      return shared
    return model.predict(features)

  def _completeness_error(self, result: AttributionResult) -> Optional[np.ndarray]:
    """|sum(attr) - (f(x) - f(b))| per example, for attributions compared with a baseline."""
    baseline_prediction = np.asarray(result.baseline_prediction, np.float64)
    if self.value_kind != 'attribution' or np.isnan(baseline_prediction).all():
      return None
    gap = np.asarray(result.prediction, np.float64) - baseline_prediction
    return np.abs(result.attribution_totals() - gap)

  def _attribute(self, model, features, reference, target, labels,
                 example_ids) -> AttributionResult:
    """The method's values; value_kind and completeness_error are the base's to set."""
    raise NotImplementedError


def content_example_ids(model: ModelFunction, features) -> np.ndarray:
  """[N] int64 ids from the examples' own values: a hash of each row's model inputs.

  A row gets the same id in any call and at any position, so per-example
  randomness keyed on ids does not depend on how rows are split into calls.
  Identical rows share an id (and so their draws). Values are hashed as the
  model takes them (float32 features as float32), so 1.0 and np.float32(1.0)
  agree. Images (an array, not a dict) are hashed whole.
  """
  if not isinstance(features, Mapping):
    features = {model.input_names[0]: features}
  features = model.element_features(features)
  n = len(np.asarray(features[model.input_names[0]]))
  fixed, strings = [], []
  for name in model.input_names:
    values = np.asarray(features[name])
    column = to_model_column(values, model.input_dtypes[name]).reshape(n, -1)
    if column.dtype == object:
      strings.append(column)
    else:
      fixed.append(np.ascontiguousarray(column).view(np.uint8).reshape(n, -1))
  fixed = np.concatenate(fixed, axis=1) if fixed else np.zeros((n, 0), np.uint8)
  ids = np.zeros(n, np.int64)
  for i in range(n):
    digest = hashlib.blake2b(fixed[i].tobytes(), digest_size=8)
    for column in strings:
      for value in column[i]:
        # Length-prefixed, so ('ab', 'c') and ('a', 'bc') differ.
        digest.update(len(value).to_bytes(8, 'little'))
        digest.update(value)
    # 63 bits: ids seed numpy generators, which take non-negative integers.
    ids[i] = int.from_bytes(digest.digest(), 'little') >> 1
  return ids


def _batch_size(model: ModelFunction, features: Features) -> int:
  lengths = {len(np.asarray(features[n]).reshape(-1)) for n in model.input_names if n in features}
  if len(lengths) > 1:
    raise ConfigError(f'Features have different lengths: {sorted(lengths)}.')
  return lengths.pop() if lengths else 0


def method_from_json_dict(config: Mapping[str, Any]) -> AttributionMethod:
  return AttributionMethod.from_json_dict(config)


def method_classes(image: Optional[bool] = None) -> List[type]:
  """Registered method classes by name; image=True/False: those for image/tabular models."""
  classes = [AttributionMethod._registry[name] for name in sorted(AttributionMethod._registry)]  # pylint: disable=protected-access
  return [c for c in classes if image is None or bool(c.image_method) == image]


def resolve_targets(model: ModelFunction, outputs: np.ndarray, target: Target) -> np.ndarray:
  """The output column each example's attribution explains."""
  n = outputs.shape[0]
  if isinstance(target, np.ndarray):
    targets = target.astype(np.int32).reshape(-1)
    if len(targets) != n or targets.min(initial=0) < 0 or \
        targets.max(initial=0) >= max(1, model.num_outputs):
      raise ConfigError(f'Per-example targets must be {n} class indices below '
                        f'{model.num_outputs}.')
    return targets
  if isinstance(target, str):
    if target != TARGET_PREDICTED:
      raise ConfigError(f"target must be 'predicted' or a class index, got {target!r}.")
    if model.num_outputs == 1:
      return np.zeros(n, np.int32)
    return np.argmax(outputs, axis=1).astype(np.int32)
  if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
    raise ConfigError(f"target must be 'predicted' or a class index, got {target!r}.")
  if not 0 <= int(target) < model.num_outputs:
    raise ConfigError(f'target class index {target} is outside the model output '
                      f'(it has {model.num_outputs} output(s)).')
  return np.full(n, int(target), np.int32)

