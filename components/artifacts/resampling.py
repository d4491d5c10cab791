"""Poisson bootstrap and estimator draws over a per-example attributions table, streamed.

Every resampling weight is a function of (seed, stream, example index,
replicate) alone, so the sums below are the same whichever way the table is cut
into row groups, files or Beam bundles, and adding partial sums is exact: the
in-process loop and the Beam combine give identical intervals. The Poisson(1)
bootstrap (each example appears Poisson(1) times in a replicate) is the
streaming form of the bootstrap TFMA uses for its confidence intervals.

Estimator draws add each sampling estimator's own error: draw d perturbs every
attribution by its standard error times a standard normal, so a verdict can be
re-taken as if the estimator had been run with another seed.

No TensorFlow, TFX or Beam imports.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfx_explain.artifacts import tables

OVERALL = 'Overall'
_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64's finaliser: a bijective, well-mixed hash of uint64 values (wraps mod 2^64)."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def uniforms(seed: int, stream: int, example_ids: np.ndarray, count: int,
             columns: int = 1) -> np.ndarray:
  """[count, N, columns] uniforms in (0, 1), each a hash of (seed, stream, id, draw, column)."""
  ids = np.asarray(example_ids, np.int64).astype(np.uint64)
  draw = np.arange(count, dtype=np.uint64)[:, None, None]
  column = np.arange(columns, dtype=np.uint64)[None, None, :]
  with np.errstate(over='ignore'):
    key = _mix(np.array([(seed & 0xFFFFFFFF) | ((stream & 0xFFFFFFFF) << 32)], np.uint64))
    x = _mix(_mix(ids[None, :, None] ^ key) + draw * np.uint64(0xD1B54A32D192ED03)
             + column * np.uint64(0x8CB92BA72F3D8DD7))
  # The top 53 bits as a double, shifted off 0.
  return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def poisson_weights(seed: int, stream: int, example_ids: np.ndarray,
                    replicates: int) -> np.ndarray:
  """[replicates, N] Poisson(1) counts: how often each example appears in each replicate."""
  u = uniforms(seed, stream, example_ids, replicates)[:, :, 0]
  return np.searchsorted(_POISSON_CDF, u).astype(np.float64)


def standard_normals(seed: int, stream: int, example_ids: np.ndarray, draws: int,
                     features: int) -> np.ndarray:
  """[draws, N, F] standard normals (Box–Muller on two hashed uniforms)."""
  u = uniforms(seed, stream, example_ids, draws, 2 * features)
  return np.sqrt(-2.0 * np.log(u[..., :features])) * np.cos(2.0 * np.pi * u[..., features:])


@dataclasses.dataclass(frozen=True)
class ResamplingPlan:
  """What to accumulate from one side of a comparison. Picklable, so Beam workers take it.

  features: the table columns compared, per method.
  edges: per method, [F, bins + 1] histogram edges per feature (for distances),
    or None when no distance is asked for.
  stream: keeps the two sides' weights independent (different examples may
    share an index).
  """
  seed: int
  stream: int
  replicates: int
  draws: int
  features: Mapping[str, Tuple[str, ...]]
  slices: Tuple[str, ...] = (OVERALL,)
  edges: Optional[Mapping[str, np.ndarray]] = None


@dataclasses.dataclass
class ResampledSums:
  """Sums over the examples of one (method, slice): the point estimate, replicates and draws.

  Attributions are used as |a| for importances and signed for distributions; a
  NaN attribution (a feature the method skipped) adds nothing.
  """
  examples: int
  count: np.ndarray                 # [F] examples where the feature was attributed
  abs_sum: np.ndarray               # [F]
  weight: np.ndarray                # [R] total weight per replicate
  replicate_abs_sum: np.ndarray     # [R, F]
  # [D, F] point weights, attributions moved by their standard errors (rows
  # without standard errors stay as they are).
  draw_abs_sum: np.ndarray
  histogram: Optional[np.ndarray] = None            # [F, B]
  replicate_histogram: Optional[np.ndarray] = None  # [R, F, B]
  draw_histogram: Optional[np.ndarray] = None       # [D, F, B]
  # Some row had a non-zero standard error: the draws differ from the point.
  has_errors: bool = False

  def merge(self, other: 'ResampledSums') -> 'ResampledSums':
    def add(a, b):
      return None if a is None else a + b
    return ResampledSums(
        self.examples + other.examples, self.count + other.count, self.abs_sum + other.abs_sum,
        self.weight + other.weight, self.replicate_abs_sum + other.replicate_abs_sum,
        self.draw_abs_sum + other.draw_abs_sum, add(self.histogram, other.histogram),
        add(self.replicate_histogram, other.replicate_histogram),
        add(self.draw_histogram, other.draw_histogram), self.has_errors or other.has_errors)

  # Importances: mean |attribution| per feature, over attributed examples.
  def importance(self) -> np.ndarray:
    return self.abs_sum / np.maximum(self.count, 1)

  def replicate_importance(self) -> np.ndarray:
    # A feature is attributed on all of a method's rows or on none, so the
    # replicate's total weight is its count.
    attributed = self.count > 0
    return np.where(attributed, self.replicate_abs_sum, 0.0) / np.maximum(
        self.weight, 1e-12)[:, None]

  def draw_importance(self) -> np.ndarray:
    """[D, F] importances of the draws, re-centred on the point estimate.

    |a + noise| is larger than |a| on average, so uncentred draws would move every
    small importance up; what a draw should change is the spread, not the level.
    """
    drawn = self.draw_abs_sum / np.maximum(self.count, 1)
    if not len(drawn):
      return drawn
    return drawn - drawn.mean(axis=0) + self.importance()


_ARRAYS = ('count', 'abs_sum', 'weight', 'replicate_abs_sum', 'draw_abs_sum', 'histogram',
           'replicate_histogram', 'draw_histogram')


def encode_sums(key: Tuple[str, str], sums: ResampledSums) -> bytes:
  """One (method, slice) and its sums as npz bytes (plain arrays: nothing to unpickle)."""
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  arrays = {name: getattr(sums, name) for name in _ARRAYS if getattr(sums, name) is not None}
  np.savez(buffer, key=np.asarray(key), examples=np.asarray(sums.examples),
           has_errors=np.asarray(sums.has_errors), **arrays)
  return buffer.getvalue()


def decode_sums(data: bytes) -> Tuple[Tuple[str, str], ResampledSums]:
  import io  # pylint: disable=g-import-not-at-top
  with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
    method, slice_name = (str(v) for v in arrays['key'])
    return (method, slice_name), ResampledSums(
        examples=int(arrays['examples']), has_errors=bool(arrays['has_errors']),
        **{name: arrays[name] if name in arrays.files else None for name in _ARRAYS})


def merge_all(sums: Iterable[ResampledSums]) -> ResampledSums:
  sums = list(sums)
  merged = sums[0]
  for other in sums[1:]:
    merged = merged.merge(other)
  return merged


def _histograms(values: np.ndarray, edges: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """[W, F, B] weighted counts of values [N, F] (NaN ignored) in bins; weights [W, N]."""
  n, features = values.shape
  bins = edges.shape[1] - 1
  counts = np.zeros((weights.shape[0], features, bins))
  for j in range(features):
    finite = np.isfinite(values[:, j])
    if not finite.any():
      continue
    index = np.clip(np.searchsorted(edges[j], values[finite, j], side='right') - 1, 0, bins - 1)
    onehot = np.zeros((int(finite.sum()), bins))
    onehot[np.arange(len(index)), index] = 1.0
    counts[:, j, :] = weights[:, finite] @ onehot
  return counts


def _draw_histograms(perturbed: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """[D, F, B] counts of each draw's perturbed values [D, N, F]."""
  ones = np.ones((1, perturbed.shape[1]))
  return np.concatenate([_histograms(draw, edges, ones) for draw in perturbed])


def rows_by_slice(frame, slices: Sequence[str]) -> Dict[str, np.ndarray]:
  """Row positions of each wanted slice ('Overall': every row)."""
  members: Dict[str, List[int]] = {s: [] for s in slices if s != OVERALL}
  if members:
    for row, names in enumerate(frame[tables.SLICES_COLUMN]):
      for name in names if names is not None else ():
        if name in members:
          members[name].append(row)
  out = {name: np.asarray(rows, np.int64) for name, rows in members.items()}
  if OVERALL in slices:
    out[OVERALL] = np.arange(len(frame))
  return out


def accumulate(plan: ResamplingPlan, frame) -> Dict[Tuple[str, str], ResampledSums]:
  """Sums of one chunk of the per-example table, keyed by (method, slice)."""
  out: Dict[Tuple[str, str], ResampledSums] = {}
  for method, features in plan.features.items():
    rows = frame[frame['method'] == method]
    if not len(rows):
      continue
    values = rows[list(features)].to_numpy(np.float64)
    errors = None
    if plan.draws:
      columns = [tables.standard_error_column(f) for f in features]
      # Deterministic methods leave their standard-error columns null, exact
      # evaluations (every coalition) leave them 0: nothing to draw.
      if all(c in rows.columns for c in columns):
        errors = np.nan_to_num(rows[columns].to_numpy(np.float64))
        errors = errors if errors.any() else None
    ids = rows['example_index'].to_numpy(np.int64)
    edges = plan.edges.get(method) if plan.edges is not None else None
    for slice_name, members in rows_by_slice(rows, plan.slices).items():
      if not len(members):
        continue
      out[(method, slice_name)] = _sums(plan, values[members], ids[members],
                                        None if errors is None else errors[members], edges)
  return out


def _sums(plan: ResamplingPlan, values: np.ndarray, ids: np.ndarray,
          errors: Optional[np.ndarray], edges: Optional[np.ndarray]) -> ResampledSums:
  finite = np.isfinite(values)
  absolute = np.where(finite, np.abs(values), 0.0)
  weights = poisson_weights(plan.seed, plan.stream, ids, plan.replicates)
  features = values.shape[1]
  perturbed = None
  if errors is not None and plan.draws:
    noise = standard_normals(plan.seed, plan.stream + 1, ids, plan.draws, features) * errors
    perturbed = values[None] + noise
    draw_abs = np.where(finite[None], np.abs(perturbed), 0.0).sum(axis=1)
  else:
    # Every chunk has [D, F] draws, so chunks with and without errors merge.
    draw_abs = np.repeat(absolute.sum(axis=0)[None], plan.draws, axis=0)
  sums = ResampledSums(
      examples=len(values), count=finite.sum(axis=0).astype(np.int64),
      abs_sum=absolute.sum(axis=0), weight=weights.sum(axis=1),
      replicate_abs_sum=weights @ absolute, draw_abs_sum=draw_abs,
      has_errors=perturbed is not None)
  if edges is not None:
    sums.histogram = _histograms(values, edges, np.ones((1, len(values))))[0]
    sums.replicate_histogram = _histograms(values, edges, weights)
    sums.draw_histogram = (_draw_histograms(perturbed, edges) if perturbed is not None
                           else np.repeat(sums.histogram[None], plan.draws, axis=0))
  return sums


def value_ranges(frames: Iterable, features: Mapping[str, Sequence[str]]
                 ) -> Dict[str, np.ndarray]:
  """Per method, [F, 2] min and max of the finite attributions of each feature."""
  ranges: Dict[str, np.ndarray] = {}
  for frame in frames:
    for method, names in features.items():
      rows = frame[frame['method'] == method]
      if not len(rows):
        continue
      values = rows[list(names)].to_numpy(np.float64)
      low = np.nanmin(np.where(np.isfinite(values), values, np.inf), axis=0)
      high = np.nanmax(np.where(np.isfinite(values), values, -np.inf), axis=0)
      if method in ranges:
        low = np.minimum(low, ranges[method][:, 0])
        high = np.maximum(high, ranges[method][:, 1])
      ranges[method] = np.stack([low, high], axis=1)
  return ranges


def histogram_edges(ranges: Sequence[Mapping[str, np.ndarray]], bins: int
                    ) -> Dict[str, np.ndarray]:
  """Shared uniform edges per method and feature, spanning both sides' values."""
  methods = set().union(*[set(r) for r in ranges])
  edges = {}
  for method in methods:
    parts = [r[method] for r in ranges if method in r]
    low = np.min([p[:, 0] for p in parts], axis=0)
    high = np.max([p[:, 1] for p in parts], axis=0)
    low = np.where(np.isfinite(low), low, 0.0)
    high = np.where(np.isfinite(high), high, 0.0)
    high = np.where(high > low, high, low + 1.0)   # a constant feature: one wide bin holds it
    edges[method] = np.linspace(low, high, bins + 1, axis=1)
  return edges


def accumulate_frames(plan: ResamplingPlan, frames: Iterable
                      ) -> Dict[Tuple[str, str], ResampledSums]:
  """The in-process loop: one chunk (Parquet row group) at a time."""
  merged: Dict[Tuple[str, str], ResampledSums] = {}
  for frame in frames:
    for key, sums in accumulate(plan, frame).items():
      merged[key] = merged[key].merge(sums) if key in merged else sums
  return merged
