"""Model randomisation sanity check (Adebayo et al. 2018), cascading, and input invariance.

An explanation that still looks the same once the model's learned weights are
noise explains the data (or the method), not the model. The cascade re-draws
the layers' weights from the top (output) layer down, cumulatively, and after
each stage compares the attributions of the same rows, same method and same
targets (the real model's predicted classes) with the real model's: mean
per-example Spearman correlation of |attribution|.

It cannot be fooled by a randomiser that does nothing: the real model's
attributions are first computed twice (the model and a fresh copy of it,
same rows and seeds) and must agree exactly (self-similarity 1), so a stage
that changed nothing scores 1 and fails the bound, which is below 1; a stage
whose weights are unchanged is also named as such.

Input invariance (Kindermans et al. 2017): g(x) = f(x - c) explains the inputs
x + c exactly as f explains x, once the reference (mean, median, background)
moves by c too. Attributions against such a reference-based baseline must not
change; against a fixed one (zeros, given values) they do, by construction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfx_explain.configurable import ConfigError
from tfx_explain.validation.checks import Check, CheckResult
from tfx_explain.validation.ranking import spearman
from tfx_explain.validators import check_int, check_number

# Self-similarity is compared with 1 to this tolerance: both runs make the same
# float32 computations on the same weights, so ranks agree exactly unless the
# computation is not deterministic.
SELF_SIMILARITY_TOLERANCE = 1e-6
# Baselines that are statistics of the reference split, so they move with its values.
REFERENCE_BASELINES = ('mean', 'median')


@dataclasses.dataclass
class Stage:
  """One cascading stage: the layers re-drawn so far and the similarity it leaves."""
  layer: str                      # the layer this stage added
  layers: List[str]               # every layer re-drawn so far, top first
  similarity: float               # mean per-example Spearman of |attribution| vs the real model
  changed: bool                   # whether re-drawing changed any of this layer's weights
  map_similarity: Optional[float] = None   # image methods: the same on the flattened maps

  def to_dict(self) -> Dict[str, Any]:
    return {k: _finite_or_none(v) for k, v in dataclasses.asdict(self).items()
            if v is not None}


def _finite_or_none(value):
  """NaN (no row had a ranking to compare) as None: details travel as JSON."""
  return None if isinstance(value, float) and not np.isfinite(value) else value


@dataclasses.dataclass
class Randomization:
  """What the cascade measured."""
  self_similarity: float
  self_map_similarity: Optional[float]
  stages: List[Stage]
  examples: int                   # rows compared (rows whose real attributions rank features)
  layers_with_weights: int        # layers the model has to re-draw

  @property
  def self_consistent(self) -> bool:
    values = [self.self_similarity] + ([self.self_map_similarity]
                                       if self.self_map_similarity is not None else [])
    return all(v >= 1.0 - SELF_SIMILARITY_TOLERANCE for v in values)


# -- layers and their weights -------------------------------------------------------------

def layer_stages(model_function) -> List[Tuple[str, list]]:
  """[(layer name, trainable variables)] of every layer with any, top (output) layer first.

  Keras models by `model.layers`; models restored from tf.saved_model.save by
  their saved layers (`variables_by_layer`); a flat-image view by the model
  under it. Only trainable weights are re-drawn: non-trainable ones are
  statistics (Normalization's mean and variance, batch norm's moving moments),
  and noise there is not a random model but a broken one (a negative variance).
  Layers with none, the Transform layer and lookups included, are skipped.
  """
  forest = getattr(model_function, 'forest', None)
  if forest is not None:
    raise ConfigError(
        f'ModelRandomizationCheck re-draws layer weights, and this model is a decision forest '
        f'({forest.description}) with none. Tree SHAP reads the served trees exactly (checked '
        'on every batch), so leave this check out for forests.')
  by_layer = getattr(model_function, 'variables_by_layer', None)
  if by_layer is not None:
    layers = by_layer()
  elif getattr(model_function, 'model', None) is not None:
    layers = [(layer.name, list(layer.trainable_weights))
              for layer in reversed(model_function.model.layers) if layer.trainable_weights]
  elif getattr(model_function, 'flat', None) is not None:   # image_model.FlatImageModel
    return layer_stages(model_function.flat)
  else:
    raise ConfigError('ModelRandomizationCheck needs a Keras model or a SavedModel with its '
                      'Keras call saved; signatures alone have no layers to re-draw.')
  if not layers:
    raise ConfigError('ModelRandomizationCheck: the model has no layer with trainable weights.')
  return layers


def randomize_layer(variables: Sequence[Any], rng: np.random.Generator) -> None:
  """Re-draws each variable from N(0, its own spread); 0.01 where it has none (biases at 0).

  Compiled functions read the variables, so they see the new weights.
  """
  for variable in variables:
    values = variable.numpy()
    variable.assign(rng.normal(0.0, max(float(np.std(values)), 1e-2), size=values.shape)
                    .astype(values.dtype))


def randomize_top_layer(model_function, seed: int) -> str:
  """Re-draws the weights of the top layer that has trainable ones; returns its name."""
  name, variables = layer_stages(model_function)[0]
  randomize_layer(variables, np.random.default_rng(seed))
  return name


# -- similarity -----------------------------------------------------------------------------

def _values(result, maps: bool) -> Optional[np.ndarray]:
  """[N, F] attributions, or [N, P] flattened maps of an image method (None without maps)."""
  if not maps:
    return np.asarray(result.attributions, np.float64)
  values = getattr(result, 'maps', None)
  return None if values is None else np.asarray(values, np.float64).reshape(len(values), -1)


def rankable_rows(real: np.ndarray) -> np.ndarray:
  """Rows whose real |attributions| rank the attributed columns: finite, not all equal.

  A row the real model attributes uniformly (all zero, say) has no ranking to
  keep or lose, and Spearman against a constant is 0 by convention: counting
  it would pull even the real model's self-similarity below 1.
  """
  values = np.abs(real)
  return np.isfinite(values).all(axis=1) & (np.ptp(values, axis=1) > 0)


def similarity(real: np.ndarray, other: np.ndarray, rows: Optional[np.ndarray] = None) -> float:
  """Mean per-example Spearman correlation of |attribution| over the attributed columns."""
  columns = ~np.isnan(real).all(axis=0)
  real, other = real[:, columns], other[:, columns]
  if rows is None:
    rows = rankable_rows(real)
  # Identical magnitudes correlate 1 exactly; corrcoef would round it to 1 - 1e-16.
  correlations = [1.0 if np.array_equal(x, y) else spearman(x, y) for x, y in
                  zip(np.abs(real[rows]), np.abs(np.nan_to_num(other[rows])))]
  return float(np.mean(correlations)) if correlations else float('nan')


# -- the cascade ------------------------------------------------------------------------------

def explained_rows(reference, num_examples: int) -> Dict[str, np.ndarray]:
  """The first rows of the reference's background sample (a uniform sample in any prefix)."""
  return {k: v[:num_examples] for k, v in reference.background.items()}


def predicted_targets(model, rows) -> Any:
  """The real model's predicted class of each row (0 for a single output)."""
  return np.argmax(model.predict(rows), axis=1) if model.num_outputs > 1 else 0


def cascading_randomization(model, load_copy: Callable[[], Any], method, reference,
                            rows: Mapping[str, np.ndarray], seed: int = 0,
                            max_stages: Optional[int] = None) -> Randomization:
  """Self-similarity, then the similarity after each cumulative re-draw, top layer first.

  Args:
    model: the real model (a ModelFunction); it is not changed.
    load_copy: returns a fresh, unshared copy of the same model; its weights are re-drawn.
    method: the AttributionMethod to compare.
    reference: the ReferenceStats the method explains against.
    rows: the examples to explain.
    seed: seeds the re-draws (one generator per layer, so stage k re-draws the
      same weights whatever max_stages is).
    max_stages: stop after this many layers; None re-draws every layer with weights.
  """
  targets = predicted_targets(model, rows)
  n = len(np.asarray(next(iter(rows.values()))))
  ids = np.arange(n, dtype=np.int64)

  def attribute(function):
    return method.attribute(function, rows, reference, target=targets, example_ids=ids)

  real = attribute(model)
  copy = load_copy()
  fresh = attribute(copy)
  real_values, real_maps = _values(real, False), _values(real, True)
  rows_used = rankable_rows(real_values[:, ~np.isnan(real_values).all(axis=0)])
  map_rows = rankable_rows(real_maps) if real_maps is not None else None

  def compare(result) -> Tuple[float, Optional[float]]:
    maps = _values(result, True)
    return (similarity(real_values, _values(result, False), rows_used),
            similarity(real_maps, maps, map_rows) if real_maps is not None else None)

  self_similarity, self_map_similarity = compare(fresh)
  layers = layer_stages(copy)
  if max_stages is not None:
    layers = layers[:max_stages]
  stages, done = [], []
  for index, (name, variables) in enumerate(layers):
    before = [np.array(v.numpy(), copy=True) for v in variables]
    randomize_layer(variables, np.random.default_rng([seed, index]))
    changed = any(not np.array_equal(b, v.numpy()) for b, v in zip(before, variables))
    done.append(name)
    value, map_value = compare(attribute(copy))
    stages.append(Stage(name, list(done), value, changed, map_value))
  return Randomization(self_similarity, self_map_similarity, stages, int(rows_used.sum()),
                       len(layer_stages(model)))


# -- input invariance ---------------------------------------------------------------------------

def _engine_model_function():
  from tfx_explain.engine.model import ModelFunction  # pylint: disable=g-import-not-at-top
  return ModelFunction


def shifted_model(model, shift: Mapping[str, float]):
  """g(x) = f(x - c) over the float inputs: a ModelFunction whose compiled calls undo `shift`.

  Every tabular method reaches the model through `_forward(points, others)`
  (points: the differentiable float inputs; others: every other column, float
  inputs that gradients do not reach included), so shifting there shifts
  what every method evaluates, and gradients pass through the subtraction
  unchanged.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  base = _engine_model_function()

  class ShiftedModel(base):
    autograph = model.autograph

    def __init__(self):
      # pylint: disable=protected-access
      super().__init__(model.model_inputs, model._model_dtypes, model._input_ranks,
                       model.output_kind, model.num_outputs, model.max_rows, model.vector_inputs)
      self._float_features = list(model.float_features)
      self._point_shift = tf.constant([shift.get(n, 0.0) for n in self._float_features],
                                      tf.float32)
      self._other_shift = [shift.get(n) for n in self.other_features]

    def _forward(self, points, others):
      others = [o if c is None else o - tf.cast(c, o.dtype)
                for o, c in zip(others, self._other_shift)]
      return model._forward(points - self._point_shift, others)  # pylint: disable=protected-access

  return ShiftedModel()


def input_shift(model, reference) -> Dict[str, float]:
  """c: one reference standard deviation per float input (1 where it is 0 or unknown).

  Large enough to move a fixed baseline's attributions visibly, small enough
  that float32 loses nothing that matters undoing it (|x + c| stays in the
  data's own range of magnitudes).
  """
  return {n: float(reference.std.get(n) or 1.0) for n in model.input_names
          if model.input_dtypes[n].is_floating and n in reference.background}


def shifted_reference(reference, shift: Mapping[str, float]):
  """The reference of the shifted data: mean, median and background moved by c."""
  background = {k: (np.asarray(v) + np.asarray(shift[k], np.asarray(v).dtype)
                    if k in shift else v) for k, v in reference.background.items()}
  return dataclasses.replace(
      reference, background=background,
      mean={k: v + shift.get(k, 0.0) for k, v in reference.mean.items()},
      median={k: v + shift.get(k, 0.0) for k, v in reference.median.items()})


def invariance_expected(method) -> Tuple[bool, str]:
  """Whether the method's attributions can be input invariant, and why (not)."""
  baseline = getattr(method, 'baseline', None)
  if isinstance(baseline, Mapping):
    return False, (f'baseline {dict(baseline)} gives fixed values, which do not move with the '
                   'data')
  if isinstance(baseline, str) and baseline not in REFERENCE_BASELINES:
    return False, f'baseline {baseline!r} is fixed, not a statistic of the data'
  if baseline is not None:
    return True, f'baseline {baseline!r} is a statistic of the reference, shifted with it'
  if getattr(method, 'requires_background', False):
    return True, 'the background sample is shifted with the data'
  return True, 'no baseline: the shift changes no gradient'


@dataclasses.dataclass
class Invariance:
  max_relative_difference: float
  shift: Dict[str, float]
  expected: bool
  reason: str
  examples: int


def input_invariance(model, method, reference, rows: Mapping[str, np.ndarray]) -> Invariance:
  """Max relative change of the attributions under a shift of the inputs the model undoes.

  The relative difference of an example is max_j |a_j - a'_j| / max_j |a_j|, so
  it is scale free and a feature near zero cannot inflate it; rows whose
  attributions are all zero are left out.
  """
  targets = predicted_targets(model, rows)
  n = len(np.asarray(next(iter(rows.values()))))
  ids = np.arange(n, dtype=np.int64)
  shift = input_shift(model, reference)
  features = model.element_features(rows)
  moved = {k: (np.asarray(v) + np.asarray(shift[k], np.asarray(v).dtype) if k in shift else v)
           for k, v in features.items()}
  a = method.attribute(model, rows, reference, target=targets, example_ids=ids).attributions
  b = method.attribute(shifted_model(model, shift), moved, shifted_reference(reference, shift),
                       target=targets, example_ids=ids).attributions
  columns = ~np.isnan(a).all(axis=0)
  a, b = a[:, columns], b[:, columns]
  scale = np.abs(a).max(axis=1) if a.size else np.zeros(len(a))
  keep = scale > 0
  errors = np.abs(a - b).max(axis=1)[keep] / scale[keep] if keep.any() else np.zeros(0)
  expected, reason = invariance_expected(method)
  return Invariance(float(errors.max()) if len(errors) else 0.0, shift, expected, reason,
                    int(keep.sum()))


# -- the check --------------------------------------------------------------------------------------

class ModelRandomizationCheck(Check):
  """Sanity check (Adebayo et al. 2018): randomising the model must change its attributions.

  Cascading: the layers' trainable weights are re-drawn at random from the top
  (output) layer down, one more layer each stage, up to every layer with
  weights or max_stages; cascading=False re-draws the top layer only. After each
  stage the attributions of the same reference rows (same method, targets the
  real model's predicted classes) are compared with the real model's: mean
  per-example Spearman of |attribution| (for image methods on the flattened
  maps, which decide; the regional totals are reported beside them).

  Passes only when the real model's attributions computed twice agree exactly
  (self-similarity 1, to SELF_SIMILARITY_TOLERANCE) and every stage changed its
  layer's weights and leaves a similarity of at most max_correlation, which
  must be below 1 so a no-op randomiser cannot pass.

  input_invariance=True adds a result 'input_invariance' (Kindermans et al.
  2017): the model behind an input shift it undoes, explained on the shifted
  rows with the reference shifted too, must attribute within
  max_invariance_error (max relative difference). With a fixed baseline (zeros,
  given values) it fails by construction, and the message says so: such
  attributions are not input invariant. Image models are not judged.
  """
  name = 'model_randomization'

  def __init__(self, method: str = 'integrated_gradients', max_correlation: float = 0.5,
               num_examples: int = 50, seed: int = 0, cascading: bool = True,
               max_stages: Optional[int] = None, input_invariance: bool = False,
               max_invariance_error: float = 1e-3):
    owner = 'ModelRandomizationCheck'
    if not isinstance(method, str) or not method:
      raise ConfigError(f'{owner}: method must be a method name, got {method!r}.')
    self.method = method
    self.max_correlation = check_number(owner, 'max_correlation', max_correlation, -1.0, 1.0,
                                        high_open=True)
    self.num_examples = check_int(owner, 'num_examples', num_examples, minimum=2)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    for flag, value in (('cascading', cascading), ('input_invariance', input_invariance)):
      if not isinstance(value, bool):
        raise ConfigError(f'{owner}: {flag} must be true or false, got {value!r}.')
    self.cascading = cascading
    self.max_stages = None if max_stages is None else check_int(owner, 'max_stages', max_stages)
    self.input_invariance = input_invariance
    self.max_invariance_error = check_number(owner, 'max_invariance_error',
                                             max_invariance_error, 0.0, 1.0)

  def validate(self, context):
    self._require_method(context.current, self.method)
    if context.model_path is None:
      raise ConfigError('ModelRandomizationCheck needs the model: pass model= to '
                        'ExplanationValidator.')

  def run(self, context):
    from tfx_explain.engine.base import AttributionMethod  # pylint: disable=g-import-not-at-top
    method = AttributionMethod.from_json_dict(context.current.method_config(self.method))
    reference = context.current.reference()
    real = context.load_model()
    rows = explained_rows(reference, self.num_examples)
    outcome = cascading_randomization(real, context.load_model, method, reference, rows,
                                      self.seed, self.max_stages if self.cascading else 1)
    results = [self.result(outcome)]
    if self.input_invariance:
      results.append(self.invariance_result(real, method, reference, rows))
    return results

  def result(self, outcome: Randomization) -> CheckResult:
    """One decision over every stage; the stages and self-similarity are in details."""
    image = outcome.self_map_similarity is not None

    def decisive(stage: Stage) -> float:
      return stage.map_similarity if image else stage.similarity

    worst = max(outcome.stages, key=decisive)
    unchanged = [s.layer for s in outcome.stages if not s.changed]
    above = [s.layer for s in outcome.stages if not decisive(s) <= self.max_correlation]
    self_value = outcome.self_map_similarity if image else outcome.self_similarity
    problems = []
    if not outcome.self_consistent:
      problems.append(f'the real model attributed twice has similarity {self_value:.6f}, not 1: '
                      'attributions are not reproducible, so no difference is evidence')
    if unchanged:
      problems.append(f'randomising did not change the weights of {unchanged}')
    if above:
      problems.append(f'similarity above {self.max_correlation} after re-drawing {above}')
    stages = ', '.join(f'{s.layer!r} {decisive(s):.3f}' for s in outcome.stages)
    message = (f'mean Spearman of |{"map" if image else "attribution"}| vs the model with '
               f'layers re-drawn top down ({stages}); self-similarity {self_value:.6f}, over '
               f'{outcome.examples} reference rows')
    if problems:
      message += ': ' + '; '.join(problems)
    details = {'stages': [s.to_dict() for s in outcome.stages],
               'self_similarity': _finite_or_none(outcome.self_similarity),
               'layers_with_weights': outcome.layers_with_weights,
               'self_similarity_tolerance': SELF_SIMILARITY_TOLERANCE}
    if image:
      details['self_map_similarity'] = _finite_or_none(outcome.self_map_similarity)
    value = decisive(worst)
    return CheckResult(self.name, not problems, value, self.max_correlation, '<=',
                       method=self.method, message=message, examples=outcome.examples,
                       details=details)

  def invariance_result(self, real, method, reference, rows) -> CheckResult:
    check = 'input_invariance'
    if getattr(method, 'image_method', False) or getattr(real, 'point_shape', (0,)) != (
        len(real.float_features),):
      return CheckResult(check, True, None, self.max_invariance_error, '<=', method=self.method,
                         message='not judged: input invariance is measured on tabular models')
    if getattr(method, 'requires_labels', False):
      return CheckResult(check, True, None, self.max_invariance_error, '<=', method=self.method,
                         message='not judged: the method needs labels, which the reference '
                                 'rows do not carry')
    outcome = input_invariance(real, method, reference, rows)
    passed = outcome.max_relative_difference <= self.max_invariance_error
    message = (f'max relative change of the attributions when the float inputs are shifted by '
               f'one reference standard deviation and the model undoes it, over '
               f'{outcome.examples} rows: {outcome.reason}')
    if not outcome.expected:
      message += '; so these attributions are not input invariant (Kindermans et al. 2017)'
    return CheckResult(check, passed, outcome.max_relative_difference,
                       self.max_invariance_error, '<=', method=self.method, message=message,
                       examples=outcome.examples,
                       details={'shift': outcome.shift, 'expected': outcome.expected})
