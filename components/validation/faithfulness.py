"""Faithfulness of attributions: deletion and insertion curves against random orders.

An attribution is faithful when the features it ranks first are the ones the
model's output depends on most. Deletion replaces an example's features one
by one, in order of their signed attribution toward the explained output
(largest first), and records the explained output after 0, 1, ..., K
replacements; the output should fall fastest in attribution order. Insertion
starts from every feature replaced and puts the example's values back in the
same order; the output should rise fastest. Random orders of the same
features on the same examples are the reference: a method is only useful if
it beats them (Petsiuk et al. 2018, RISE; Samek et al. 2017).

Choices, each made so the comparison with random order is fair:
  * Features are masked at the granularity of the attributions: the columns
    of the per-example table, so a vector input is masked element by element
    (`x[3]`). A string or integer feature is replaced by its reference
    baseline value (its most frequent value), a float one by the baseline the
    method used (its 'baseline' setting, 'mean' otherwise).
  * A feature the method skipped (NaN attribution in any example used) is
    never masked: it keeps the example's value in every order, random orders
    included, so both are measured on the features the method ranks.
  * Imputation 'noisy' (after ROAD, Rong et al. 2022) breaks the link between
    "this value is the baseline" and "this feature was removed": a float
    feature is replaced by baseline + N(0, (noise_scale * std)^2) with std its
    spread in the reference sample, a string or integer feature by its value
    in a random background row. Each example draws one value per feature
    (seeded), used by every order, so orders differ only in their order.
  * Area under a curve is the trapezoid over the K steps divided by K (the
    mean height). The gain over random is AUC(random) - AUC(attribution) for
    deletion and AUC(attribution) - AUC(random) for insertion, divided by the
    range of outputs the example's curves span (attribution and random
    orders). Both AUCs lie within that range, so the gain lies in [-1, 1]
    whatever the output's scale; an example whose curves are flat (range
    within float rounding of its output) says nothing about order and is left
    out, never divided by ~0.

The curve functions are pure TensorFlow/NumPy; `FaithfulnessCheck` reads the
per-example table, the reference statistics, the model and the examples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
from tfx_explain.configurable import ConfigError
from tfx_explain.engine.model import ModelFunction, to_model_column
from tfx_explain.validation.checks import Check, CheckResult
from tfx_explain.validators import check_choice, check_int, check_number

DELETION = 'deletion'
INSERTION = 'insertion'
CURVES = (DELETION, INSERTION)
CURVE_CHOICES = (DELETION, INSERTION, 'both')
IMPUTATIONS = ('baseline', 'noisy')
SELECTIONS = ('first', 'random')
# Resamples of the percentile bootstrap: enough that the 2.5% quantile moves
# by well under a tenth of the interval between seeds.
BOOTSTRAP_SAMPLES = 2000
# Curves spanning less than this fraction of the output's magnitude are flat.
_FLAT = 1e-5


# -- curves --------------------------------------------------------------------
def attribution_order(attributions: np.ndarray) -> np.ndarray:
  """[N, K] feature indices, largest signed attribution first (ties: column order)."""
  return np.argsort(-np.asarray(attributions, np.float64), axis=1, kind='stable')


def random_orders(num_examples: int, num_features: int, num_orders: int,
                  seed: int) -> np.ndarray:
  """[N, R, K] seeded random permutations of the K features, R per example."""
  rng = np.random.default_rng([int(seed), 0x0DE1])
  base = np.broadcast_to(np.arange(num_features), (num_examples, num_orders, num_features))
  return rng.permuted(base, axis=2)


def order_curves(model: ModelFunction, features: Mapping[str, np.ndarray],
                 replacement: Mapping[str, np.ndarray], masked: Sequence[str],
                 orders: np.ndarray, targets: np.ndarray,
                 curves: Sequence[str] = (DELETION,)) -> Dict[str, np.ndarray]:
  """Explained output along each order: {curve: [N, O, K + 1]} float64.

  Step k of a deletion curve has the first k features of the order at their
  replacement values and the rest at the example's; step k of an insertion
  curve the reverse. Inputs not in `masked` keep the example's values.
  Every (example, curve, order, step) row is evaluated in one chunked model
  call, assembled in the model's split form as `shapley.coalition_values` does.

  Args:
    model: the model.
    features: name -> [N] example values, for every model input (elements split).
    replacement: name -> [N] value each masked feature takes when removed.
    masked: the K features the orders permute, a subset of model.input_names.
    orders: [N, O, K] permutations of range(K).
    targets: [N] output index explained per example.
    curves: 'deletion' and/or 'insertion'.
  """
  names = model.input_names
  unknown = [f for f in masked if f not in names]
  if unknown:
    raise ValueError(f'Masked feature(s) {unknown} are not inputs of the model ({names}).')
  orders = np.asarray(orders, np.int64)
  n, o, k = orders.shape
  targets = np.asarray(targets, np.int64).reshape(-1)
  # changed[i, o, s, j]: masked feature j has been reached after s steps of order o.
  rank = np.empty_like(orders)
  np.put_along_axis(rank, orders, np.broadcast_to(np.arange(k), orders.shape), axis=2)
  changed = rank[:, :, None, :] < np.arange(k + 1)[None, None, :, None]
  # keep[i, c, o, s, j]: masked feature j holds the example's value.
  keep_masked = np.stack([~changed if c == DELETION else changed for c in curves], axis=1)
  column = {name: masked.index(name) for name in names if name in masked}

  def keep_of(name):   # [N, C, O, K+1] for one input, or None: always the example's value
    return keep_masked[..., column[name]] if name in column else None

  floats = model.float_features
  x_float = np.stack([np.asarray(features[f], np.float32).reshape(-1) for f in floats], axis=1) \
      if floats else np.zeros((n, 0), np.float32)
  r_float = np.stack([np.asarray(replacement[f], np.float32).reshape(-1) if f in column
                      else np.asarray(features[f], np.float32).reshape(-1) for f in floats],
                     axis=1) if floats else np.zeros((n, 0), np.float32)
  keep_float = np.stack([keep_of(f) if f in column else
                         np.ones(keep_masked.shape[:4], bool) for f in floats], axis=-1) \
      if floats else np.zeros(keep_masked.shape[:4] + (0,), bool)
  coded = []   # (keep [N, C, O, K+1] or None, distinct values, example codes, replacement codes)
  for name in model.other_features:
    x = to_model_column(features[name], model.input_dtypes[name])
    r = to_model_column(replacement[name], model.input_dtypes[name]) if name in column else x
    distinct, codes = np.unique(np.concatenate([x, r]), return_inverse=True)
    coded.append((keep_of(name), tf.constant(distinct, model.input_dtypes[name]),
                  codes[:n].astype(np.int32), codes[n:].astype(np.int32)))
  per_example = len(curves) * o * (k + 1)
  outputs = np.zeros((n,) + keep_masked.shape[1:4], np.float64)
  for rows in model.row_chunks(n, per_example):
    ne = rows.stop - rows.start
    matrix = np.where(keep_float[rows], x_float[rows, None, None, None, :],
                      r_float[rows, None, None, None, :]).reshape(ne * per_example, -1)
    codes = []
    for keep, _, x_codes, r_codes in coded:
      shape = (ne,) + keep_masked.shape[1:4]
      if keep is None:
        codes.append(np.broadcast_to(x_codes[rows, None, None, None], shape).reshape(-1))
      else:
        codes.append(np.where(keep[rows], x_codes[rows, None, None, None],
                              r_codes[rows, None, None, None]).reshape(-1))
    out = model.predict_coded(matrix, codes, [distinct for _, distinct, _, _ in coded])
    out = out.reshape((ne,) + keep_masked.shape[1:4] + (-1,))
    outputs[rows] = np.take_along_axis(out, targets[rows, None, None, None, None],
                                       axis=4)[..., 0]
  return {c: outputs[:, i] for i, c in enumerate(curves)}


def curve_auc(curve: np.ndarray) -> np.ndarray:
  """Area under curves [..., K + 1] by the trapezoid rule, divided by the K steps."""
  curve = np.asarray(curve, np.float64)
  k = curve.shape[-1] - 1
  return (curve[..., :-1] + curve[..., 1:]).sum(axis=-1) / (2.0 * k)


@dataclasses.dataclass
class OrderCurves:
  """One curve kind on N examples: attribution order [N, K+1], random orders [N, R, K+1]."""
  curve: str
  attribution: np.ndarray
  random: np.ndarray

  @property
  def random_mean(self) -> np.ndarray:
    """[N, K+1] mean over random orders: the expected curve of a random ranking."""
    return self.random.mean(axis=1)

  def output_range(self) -> np.ndarray:
    """[N] range of outputs over every order's curve: what gains are divided by."""
    both = np.concatenate([self.attribution[:, None], self.random], axis=1)
    return both.max(axis=(1, 2)) - both.min(axis=(1, 2))

  def flat(self) -> np.ndarray:
    """[N] curves that do not move beyond float rounding of the output."""
    both = np.concatenate([self.attribution[:, None], self.random], axis=1)
    magnitude = np.maximum(1.0, np.abs(both).max(axis=(1, 2)))
    return self.output_range() <= _FLAT * magnitude

  def raw_gain(self) -> np.ndarray:
    """[N] AUC difference over random, in output units, positive when better than random."""
    difference = curve_auc(self.attribution) - curve_auc(self.random_mean)
    return -difference if self.curve == DELETION else difference

  def gain(self) -> np.ndarray:
    """[N] raw_gain / output range, in [-1, 1]; NaN for flat curves."""
    scale = self.output_range()
    flat = self.flat()
    return np.where(flat, np.nan, self.raw_gain() / np.where(flat, 1.0, scale))


def faithfulness_curves(model: ModelFunction, features: Mapping[str, np.ndarray],
                        attributions: np.ndarray, masked: Sequence[str],
                        replacement: Mapping[str, np.ndarray], targets: np.ndarray,
                        curves: Sequence[str] = (DELETION,), num_random_orders: int = 16,
                        seed: int = 0) -> Dict[str, OrderCurves]:
  """Deletion/insertion curves in attribution order and in seeded random orders.

  attributions: [N, K] over `masked`, finite. Attribution and random orders of
  every example go through one chunked model call.
  """
  attributions = np.asarray(attributions, np.float64)
  n, k = attributions.shape
  if k != len(masked):
    raise ValueError(f'attributions have {k} columns for {len(masked)} masked features.')
  if not np.isfinite(attributions).all():
    raise ValueError('attributions must be finite over the masked features.')
  orders = np.concatenate([attribution_order(attributions)[:, None],
                           random_orders(n, k, num_random_orders, seed)], axis=1)
  outputs = order_curves(model, features, replacement, masked, orders, targets, curves)
  return {c: OrderCurves(c, v[:, 0], v[:, 1:]) for c, v in outputs.items()}


def replacement_values(reference, names: Sequence[str], num_examples: int, baseline,
                       imputation: str = 'baseline', noise_scale: float = 0.25,
                       seed: int = 0) -> Dict[str, np.ndarray]:
  """name -> [N] value each feature takes when removed (see the module docstring).

  reference: the ReferenceStats the attributions were computed with.
  """
  values = reference.baseline_values(baseline, list(names), 'FaithfulnessCheck')
  rng = np.random.default_rng([int(seed), 0x401D])
  result = {}
  for name in names:
    is_float = reference.is_float.get(name, True)
    if imputation == 'baseline':
      result[name] = np.full(num_examples, values[name], np.float64 if is_float else object)
    elif is_float:
      spread = noise_scale * float(reference.std.get(name, 0.0))
      result[name] = float(values[name]) + spread * rng.standard_normal(num_examples)
    else:
      background = np.asarray(reference.background[name], dtype=object)
      result[name] = background[rng.integers(0, len(background), num_examples)]
  return result


def bootstrap_interval(values: np.ndarray, confidence: float, seed: int,
                       samples: int = BOOTSTRAP_SAMPLES) -> Tuple[float, float]:
  """Seeded percentile bootstrap interval of the mean of `values`."""
  values = np.asarray(values, np.float64)
  if len(values) == 0:
    return float('nan'), float('nan')
  rng = np.random.default_rng([int(seed), 0xB007])
  means = values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
  tail = 100.0 * (1.0 - confidence) / 2.0
  low, high = np.percentile(means, [tail, 100.0 - tail])
  return float(low), float(high)


# -- examples --------------------------------------------------------------------
def split_files(examples_uri: str, split: str) -> List[str]:
  """TFRecord files of a split: `examples_uri` is an Examples artifact or a split folder."""
  directory = layout.split_uri(examples_uri, split)
  if not tf.io.gfile.isdir(directory):
    directory = examples_uri
  files = layout.files_in(directory) if tf.io.gfile.isdir(directory) else []
  if not files:
    raise ConfigError(f'FaithfulnessCheck: examples_uri {examples_uri!r} has no files of split '
                      f'{split!r} (looked in {directory}).')
  return files


def read_examples(files: Sequence[str], indices: Sequence[int],
                  model: ModelFunction) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """The model inputs of the records at `indices` (positions in the split, files in order).

  Returns (name -> [M] values over model.input_names, the M indices read);
  records lacking a model input, or with the wrong number of values, are left out.
  """
  wanted = set(int(i) for i in indices)
  last = max(wanted) if wanted else -1
  sizes = {name: model.vector_inputs.get(name, 1) for name in model.model_inputs}
  columns = {name: [] for name in model.input_names}
  found = []
  position = 0
  for path in files:
    if position > last:
      break
    compression = 'GZIP' if path.endswith('.gz') else ''
    for record in tf.data.TFRecordDataset(path, compression_type=compression):
      if position > last:
        break
      if position in wanted:
        row = _parse_inputs(record.numpy(), sizes, model)
        if row is not None:
          for name, value in row.items():
            columns[name].append(value)
          found.append(position)
      position += 1
  features = {}
  for name, values in columns.items():
    dtype = model.input_dtypes[name]
    features[name] = np.asarray(values, dtype=object if dtype == tf.string
                                else dtype.as_numpy_dtype)
  return features, np.asarray(found, np.int64)


def _parse_inputs(record: bytes, sizes: Mapping[str, int], model: ModelFunction):
  example = tf.train.Example.FromString(record)
  row = {}
  for name, size in sizes.items():
    feature = example.features.feature.get(name)
    kind = feature.WhichOneof('kind') if feature is not None else None
    values = list(getattr(feature, kind).value) if kind else []
    if len(values) != size:
      return None
    for element, value in zip(model.elements.get(name, [name]), values):
      row[element] = value
  return row


# -- the check ---------------------------------------------------------------------
class FaithfulnessCheck(Check):
  """Attribution order must beat random order on deletion and/or insertion curves.

  The value is the mean over examples of the normalised gain over random
  order (module docstring), in [-1, 1]; the check passes when the lower bound
  of its seeded percentile bootstrap interval at `confidence` is at least
  min_gain. The default 0.05 asks for an order clearly better than random
  (5% of the output range the curves span), not a particular quality. Each
  example's curves explain the output its attributions explained (the
  table's `target`). curve='both' gives one result per curve.

  The model comes from `context.load_model()`, as AttributionGen explained
  it; the examples' inputs from the explained split's TFRecords (the
  table's `example_index` is a record's position in the split, files in
  sorted order): the files the attributions record in their summary
  (`example_files`), or the Examples artifact (or split folder) at `examples_uri`.
  Attributions in 'transformed' space need Transform's transformed_examples.
  """
  name = 'faithfulness'

  def __init__(self, method: str = 'integrated_gradients', curve: str = DELETION,
               min_gain: float = 0.05, num_examples: Optional[int] = 100,
               selection: str = 'first', num_random_orders: int = 16,
               imputation: str = 'baseline', noise_scale: float = 0.25,
               baseline: Any = None, confidence: float = 0.95, seed: int = 0,
               per_slice: bool = False, min_slice_examples: int = 30,
               examples_uri: Optional[str] = None):
    owner = 'FaithfulnessCheck'
    if not isinstance(method, str) or not method:
      raise ConfigError(f'{owner}: method must be a method name, got {method!r}.')
    self.method = method
    self.curve = check_choice(owner, 'curve', curve, CURVE_CHOICES)
    self.min_gain = check_number(owner, 'min_gain', min_gain, -1.0, 1.0)
    self.num_examples = None if num_examples is None else check_int(
        owner, 'num_examples', num_examples, minimum=2)
    self.selection = check_choice(owner, 'selection', selection, SELECTIONS)
    self.num_random_orders = check_int(owner, 'num_random_orders', num_random_orders)
    self.imputation = check_choice(owner, 'imputation', imputation, IMPUTATIONS)
    self.noise_scale = check_number(owner, 'noise_scale', noise_scale, 0.0, 1e6)
    if baseline is not None:
      from tfx_explain.engine.baselines import check_baseline  # pylint: disable=g-import-not-at-top
      baseline = check_baseline(owner, baseline)
    self.baseline = baseline
    self.confidence = check_number(owner, 'confidence', confidence, 0.0, 1.0,
                                   low_open=True, high_open=True)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.per_slice = bool(per_slice)
    self.min_slice_examples = check_int(owner, 'min_slice_examples', min_slice_examples,
                                        minimum=0)
    if examples_uri is not None and (not isinstance(examples_uri, str) or not examples_uri):
      raise ConfigError(f'{owner}: examples_uri must be a path, got {examples_uri!r}.')
    self.examples_uri = examples_uri

  @property
  def curves(self) -> Tuple[str, ...]:
    return CURVES if self.curve == 'both' else (self.curve,)

  def _example_files(self, context) -> List[str]:
    """The explained split's files: from examples_uri, else as the attributions recorded them."""
    if self.examples_uri:
      return split_files(self.examples_uri, context.current.split)
    return list(context.current.summary.example_files)

  def validate(self, context):
    self._require_method(context.current, self.method)
    if context.model_path is None:
      raise ConfigError('FaithfulnessCheck needs the model: pass model= to '
                        'ExplanationValidator.')
    if not self.examples_uri and not context.current.summary.example_files:
      raise ConfigError('FaithfulnessCheck needs the explained examples: these attributions '
                        'do not record their files (written by an older version); set '
                        'examples_uri to the Examples artifact (or split folder) they were '
                        'computed on.')
    if context.current.attribution_config().get('image_shape'):
      raise ConfigError('FaithfulnessCheck masks tabular features; image models are not '
                        'supported.')

  def _rows(self, context):
    """The per-example rows used: first num_examples, or a seeded sample of them."""
    frame = tables.load_attributions(context.current.uri, context.current.split, self.method)
    if any(c in frame.columns for c in tables.PER_EXAMPLE_MAP_NAMES):
      raise ConfigError('FaithfulnessCheck masks tabular features; image models are not '
                        'supported.')
    count = len(frame) if self.num_examples is None else min(self.num_examples, len(frame))
    if self.selection == 'random' and count < len(frame):
      rng = np.random.default_rng([self.seed, 0x5E1])
      frame = frame.iloc[np.sort(rng.choice(len(frame), count, replace=False))]
    else:
      frame = frame.iloc[:count]
    return frame.reset_index(drop=True)

  def run(self, context):
    view = context.current
    frame = self._rows(context)
    model = context.load_model()
    columns = [c for c in tables.feature_columns(frame) if c in model.input_names]
    values = frame[columns].to_numpy(np.float64)
    finite = np.isfinite(values).all(axis=0)
    masked = [c for c, ok in zip(columns, finite) if ok]
    if not masked:
      raise ConfigError(f'FaithfulnessCheck: method {self.method!r} attributes none of the '
                        f'model inputs {model.input_names} in every example.')
    features, found = read_examples(self._example_files(context),
                                    frame['example_index'].to_numpy(), model)
    if not len(found):
      raise ConfigError(f'FaithfulnessCheck: no record of split {view.split!r} at the '
                        "table's example indices has every model input "
                        f'{model.model_inputs}: are these the examples that were explained?')
    rows = frame.set_index('example_index').loc[found]
    reference = view.reference()
    baseline = self.baseline if self.baseline is not None else \
        view.method_config(self.method).get('baseline', 'mean')
    if not isinstance(baseline, (str, Mapping)):
      baseline = 'mean'
    replacement = replacement_values(reference, masked, len(found), baseline, self.imputation,
                                     self.noise_scale, self.seed)
    curves = faithfulness_curves(
        model, features, rows[masked].to_numpy(np.float64), masked, replacement,
        rows['target'].to_numpy(np.int64), self.curves, self.num_random_orders, self.seed)
    slices_of = [set(s) if s is not None else set() for s in rows[tables.SLICES_COLUMN]]
    missing = len(frame) - len(found)
    results = []
    for curve, measured in curves.items():
      gains = measured.gain()
      for slice_name in self._slices(view, self.per_slice):
        member = np.array([slice_name == 'Overall' or slice_name in s for s in slices_of], bool)
        results.append(self._result(curve, slice_name, measured, gains, member, masked,
                                    missing, baseline))
    return results

  def _result(self, curve, slice_name, measured, gains, member, masked, missing, baseline):
    check = f'{self.name}_{curve}'
    usable = member & np.isfinite(gains)
    count = int(usable.sum())
    if slice_name != 'Overall' and count < self.min_slice_examples:
      return CheckResult(check, True, None, self.min_gain, '>=', slice_name, self.method,
                         message=f'not judged: {count} examples < min_slice_examples '
                                 f'{self.min_slice_examples}', examples=count)
    details = {
        'curve': curve, 'features': list(masked), 'steps': len(masked),
        'imputation': self.imputation, 'baseline': baseline,
        'num_random_orders': self.num_random_orders,
        'attribution_order': measured.attribution[usable].mean(axis=0).tolist() if count else [],
        'random_order': measured.random_mean[usable].mean(axis=0).tolist() if count else [],
        'raw_gain': float(measured.raw_gain()[usable].mean()) if count else None,
        'flat_examples': int((member & ~np.isfinite(gains)).sum()),
        'unread_examples': int(missing)}
    if count == 0:
      return CheckResult(check, False, None, self.min_gain, '>=', slice_name, self.method,
                         message=f'no example whose {curve} curve moves the output: '
                                 'faithfulness cannot be measured', examples=0,
                         decided_on='lower', confidence=self.confidence, details=details)
    value = float(gains[usable].mean())
    lower, upper = bootstrap_interval(gains[usable], self.confidence, self.seed)
    return CheckResult(
        check, lower >= self.min_gain, value, self.min_gain, '>=', slice_name, self.method,
        message=f'{curve} AUC gain of {self.method} order over {self.num_random_orders} random '
                f'orders (per-example output range = 1), mean over {count} examples',
        lower=lower, upper=upper, confidence=self.confidence, decided_on='lower',
        examples=count, details=details)
