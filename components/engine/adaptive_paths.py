"""Adaptive path integrals for Integrated Gradients: points go where the error is.

Along the straight path p(a) = b + a (x - b), the derivative of the model's
output is g(a) = grad f(p(a)) . (x - b), so the exact integral of g over any
interval [a, c] of the path is f(p(c)) - f(p(a)): the model's outputs at the
interval's ends. Each interval's quadrature estimate of that integral minus
the output difference is therefore its exact share of the completeness error,
and the shares add up to the whole completeness error,
sum(attr) - (f(x) - f(b)).

`refine_paths` starts every example at a few evenly spaced points and, round
after round, bisects the half of its intervals with the largest error shares
until |sum(attr) - (f(x) - f(b))| <= tolerance * max(|f(x) - f(b)|, 1e-6)
(the relative completeness error the Beam path reports) or the example has
used max_steps gradient points. Examples that have converged drop out, so
no gradient is ever evaluated twice; every round is one chunked, compiled
gradient call over the new points of all examples still refining. An
example's points depend on its own path only, not on the batch (up to the
model's rounding, which can matter only once the shares themselves are
rounding noise: an example that cannot reach the tolerance). ReLU
networks make g jump wherever the path crosses a unit's kink, and uniform
grids then converge only as 1/steps; bisecting where the error is puts the
points around those kinks (benchmarks/ig_throughput.py measures both).

Rules: 'trapezoid' nests (a bisection costs one new gradient point, the
interval ends are gradient points whose outputs come with the gradients);
'gauss_legendre' uses two Gauss-Legendre points per interval, which do not
nest (a bisection costs four new gradient points and one output at the
midpoint), in exchange for exactness on cubic pieces.
"""

from __future__ import annotations

import dataclasses
from typing import List, Sequence

import numpy as np

ADAPTIVE_RULES = ('trapezoid', 'gauss_legendre')
# The relative completeness error's floor on |f(x) - f(b)|, as in beam/attribution.py.
GAP_FLOOR = 1e-6
# Examples refined together hold at most this many gradient values (float32)
# when each uses max_steps points; results do not depend on the grouping.
_GRADIENT_BUDGET = 1 << 25
# Two-point Gauss-Legendre nodes on [0, 1]; both weights are 1/2.
_GL_NODES = np.array([0.5 - 0.5 / np.sqrt(3.0), 0.5 + 0.5 / np.sqrt(3.0)])


@dataclasses.dataclass
class PathIntegrals:
  """Integrals of the gradient along each example's path, and what they cost."""
  mean_gradients: np.ndarray   # [N, *point_shape] float64: int_0^1 grad f(p(a)) da
  start: np.ndarray            # [N] f(b) for the explained class
  end: np.ndarray              # [N] f(x)
  steps: np.ndarray            # [N] gradient points evaluated


def refine_paths(model, x: np.ndarray, baselines: np.ndarray, others: Sequence[np.ndarray],
                 targets: np.ndarray, rule: str = 'trapezoid', tolerance: float = 1e-3,
                 initial_steps: int = 5, max_steps: int = 1024) -> PathIntegrals:
  """Adaptive path integrals from baselines[i] to x[i], others held at their columns.

  Args:
    model: a ModelFunction; points are [*model.point_shape].
    x: [N, *point_shape] the examples' float points.
    baselines: [N, *point_shape] one baseline per example.
    others: the model's other (non-float) columns, [N] each.
    targets: [N] explained output index per example (resolved, >= 0).
    rule: 'trapezoid' or 'gauss_legendre'.
    tolerance: relative completeness error to reach.
    initial_steps: gradient points each example starts with.
    max_steps: most gradient points an example may use.
  """
  n = len(x)
  size = int(np.prod(x.shape[1:], dtype=np.int64))
  group = max(1, _GRADIENT_BUDGET // (max_steps * max(1, size)))
  parts = []
  for start in range(0, n, group):
    rows = slice(start, min(n, start + group))
    parts.append(_Refinement(model, x[rows], baselines[rows], [o[rows] for o in others],
                             targets[rows], rule, tolerance, initial_steps, max_steps).run())
  if not parts:
    return PathIntegrals(np.zeros(x.shape, np.float64), np.zeros(0), np.zeros(0),
                         np.zeros(0, np.int64))
  return PathIntegrals(*(np.concatenate([getattr(p, f.name) for p in parts])
                         for f in dataclasses.fields(PathIntegrals)))


class _Refinement:
  """One group of examples. Intervals are kept in [N, width] arrays, unsorted.

  Interval (i, j) spans [lo, hi] of example i's path, with the model's outputs
  f_lo, f_hi at its ends and two gradient points (rows r1, r2 of the store),
  each weighted half its length: the trapezoid's ends, or Gauss-Legendre's two
  nodes. `est` is its estimate of the integral of g over it.
  """

  def __init__(self, model, x, baselines, others, targets, rule, tolerance, initial_steps,
               max_steps):
    self.model, self.rule, self.tolerance = model, rule, tolerance
    self.initial_steps, self.max_steps = initial_steps, max_steps
    self.x = np.asarray(x, np.float32)
    self.baselines = np.asarray(baselines, np.float32)
    self.delta = self.x.astype(np.float64) - self.baselines
    self.others, self.targets = list(others), np.asarray(targets, np.int32)
    self.n = len(self.x)
    # The gradient store: blocks of rows, the example of each row, g at each row.
    self.blocks: List[np.ndarray] = []
    self.row_example: List[np.ndarray] = []
    self.row_g: List[np.ndarray] = []
    self.num_rows = 0
    self.steps = np.zeros(self.n, np.int64)
    self.count = np.zeros(self.n, np.int64)
    self.width = 0
    self.fields = {}

  # -- model calls -----------------------------------------------------------
  def _points(self, examples, alphas):
    shape = (-1,) + (1,) * (self.x.ndim - 1)
    return (self.baselines[examples] +
            alphas.reshape(shape) * self.delta[examples]).astype(np.float32)

  def _gradients(self, examples, alphas):
    """Gradient rows at the points: (their row ids, outputs f, derivatives g)."""
    outputs, grads = self.model.target_gradients(
        self._points(examples, alphas), [o[examples] for o in self.others],
        self.targets[examples])
    g = np.einsum('rk,rk->r', grads.reshape(len(examples), -1).astype(np.float64),
                  self.delta[examples].reshape(len(examples), -1))
    ids = np.arange(self.num_rows, self.num_rows + len(examples))
    self.num_rows += len(examples)
    self.blocks.append(grads)
    self.row_example.append(examples)
    self.row_g.append(g)
    np.add.at(self.steps, examples, 1)
    return ids, outputs.astype(np.float64), g

  def _outputs(self, examples, alphas):
    outputs = self.model.predict_split(self._points(examples, alphas),
                                       [o[examples] for o in self.others])
    return outputs[np.arange(len(examples)), self.targets[examples]].astype(np.float64)

  # -- intervals ---------------------------------------------------------------
  def _grow(self, width):
    if width <= self.width:
      return
    width = max(width, 2 * self.width)
    for name, dtype in (('lo', np.float64), ('hi', np.float64), ('f_lo', np.float64),
                        ('f_hi', np.float64), ('est', np.float64), ('r1', np.int64),
                        ('r2', np.int64)):
      grown = np.zeros((self.n, width), dtype)
      if name in self.fields:
        grown[:, :self.width] = self.fields[name]
      self.fields[name] = grown
    self.width = width

  def _set(self, examples, slots, lo, hi, f_lo, f_hi, r1, r2, g):
    """Writes intervals (examples[k], slots[k]); g maps row ids to derivatives."""
    f = self.fields
    f['lo'][examples, slots], f['hi'][examples, slots] = lo, hi
    f['f_lo'][examples, slots], f['f_hi'][examples, slots] = f_lo, f_hi
    f['r1'][examples, slots], f['r2'][examples, slots] = r1, r2
    f['est'][examples, slots] = 0.5 * (hi - lo) * (g(r1) + g(r2))

  def _g_of(self):
    every = np.concatenate(self.row_g)
    return lambda rows: every[rows]

  def _start(self):
    """Every example's first intervals, evenly spaced; returns (f(b), f(x))."""
    n = self.n
    examples = np.arange(n)
    if self.rule == 'trapezoid':
      k = self.initial_steps
      edges = np.linspace(0.0, 1.0, k)
      ids, outputs, _ = self._gradients(np.repeat(examples, k), np.tile(edges, n))
      ids, outputs = ids.reshape(n, k), outputs.reshape(n, k)
      intervals = k - 1
      self._grow(intervals)
      rows = np.repeat(examples, intervals)
      slots = np.tile(np.arange(intervals), n)
      self._set(rows, slots, np.tile(edges[:-1], n), np.tile(edges[1:], n),
                outputs[:, :-1].reshape(-1), outputs[:, 1:].reshape(-1),
                ids[:, :-1].reshape(-1), ids[:, 1:].reshape(-1), self._g_of())
      start, end = outputs[:, 0], outputs[:, -1]
    else:
      intervals = max(1, self.initial_steps // 2)
      edges = np.linspace(0.0, 1.0, intervals + 1)
      at_edges = self._outputs(np.repeat(examples, intervals + 1),
                               np.tile(edges, n)).reshape(n, intervals + 1)
      lo, hi = np.tile(edges[:-1], n), np.tile(edges[1:], n)
      self._grow(intervals)
      rows = np.repeat(examples, intervals)
      r1, r2 = self._gauss_rows(rows, lo, hi)
      self._set(rows, np.tile(np.arange(intervals), n), lo, hi,
                at_edges[:, :-1].reshape(-1), at_edges[:, 1:].reshape(-1), r1, r2,
                self._g_of())
      start, end = at_edges[:, 0], at_edges[:, -1]
    self.count[:] = intervals
    return start, end

  def _gauss_rows(self, examples, lo, hi):
    h = hi - lo
    ids, _, _ = self._gradients(np.repeat(examples, 2),
                                (lo[:, None] + h[:, None] * _GL_NODES[None, :]).reshape(-1))
    ids = ids.reshape(-1, 2)
    return ids[:, 0], ids[:, 1]

  def _bisect(self, examples, slots):
    """Splits intervals (examples[k], slots[k]) at their midpoints."""
    f = self.fields
    lo, hi = f['lo'][examples, slots], f['hi'][examples, slots]
    f_lo, f_hi = f['f_lo'][examples, slots], f['f_hi'][examples, slots]
    r1, r2 = f['r1'][examples, slots], f['r2'][examples, slots]
    mid = 0.5 * (lo + hi)
    # Each bisected example appends its right halves after its current intervals.
    order = np.argsort(examples, kind='stable')
    examples, slots = examples[order], slots[order]
    lo, hi, f_lo, f_hi, r1, r2, mid = (v[order] for v in (lo, hi, f_lo, f_hi, r1, r2, mid))
    first = np.searchsorted(examples, examples)
    appended = self.count[examples] + (np.arange(len(examples)) - first)
    self._grow(int(appended.max()) + 1)
    if self.rule == 'trapezoid':
      ids, f_mid, _ = self._gradients(examples, mid)
      g = self._g_of()
      self._set(examples, slots, lo, mid, f_lo, f_mid, r1, ids, g)
      self._set(examples, appended, mid, hi, f_mid, f_hi, ids, r2, g)
    else:
      f_mid = self._outputs(examples, mid)
      left = self._gauss_rows(examples, lo, mid)
      right = self._gauss_rows(examples, mid, hi)
      g = self._g_of()
      self._set(examples, slots, lo, mid, f_lo, f_mid, *left, g)
      self._set(examples, appended, mid, hi, f_mid, f_hi, *right, g)
    np.add.at(self.count, examples, 1)

  # -- the loop ---------------------------------------------------------------
  def run(self) -> PathIntegrals:
    start, end = self._start()
    gap = np.maximum(np.abs(end - start), GAP_FLOOR)
    cost = 1 if self.rule == 'trapezoid' else 4   # new gradient points per bisection
    active = np.arange(self.n)
    while len(active):
      f, w = self.fields, self.width
      valid = np.arange(w)[None, :] < self.count[active, None]
      share = np.where(valid, f['est'][active, :w] - (f['f_hi'][active, :w] -
                                                     f['f_lo'][active, :w]), 0.0)
      converged = np.abs(share.sum(axis=1)) <= self.tolerance * gap[active]
      # Bisect the worse half of the intervals, within the example's budget.
      room = (self.max_steps - self.steps[active]) // cost
      take = np.minimum(self.count[active] // 2 + 1, room)
      keep = ~converged & (take > 0)
      active, share, take = active[keep], share[keep], take[keep]
      if not len(active):
        break
      # Shares are ranked in eighths of an octave, ties by slot: a model's outputs can
      # differ in their last bits between batch shapes, and should not change which
      # intervals are split.
      level = np.floor(8.0 * np.log2(np.maximum(np.abs(share), 1e-300)))
      order = np.where(valid[keep], -level, np.inf)
      worst = np.argsort(order, axis=1, kind='stable')[:, :int(take.max())]
      chosen = np.arange(worst.shape[1])[None, :] < take[:, None]
      self._bisect(np.broadcast_to(active[:, None], worst.shape)[chosen], worst[chosen])
    return PathIntegrals(self._mean_gradients(), start, end, self.steps.copy())

  def _mean_gradients(self) -> np.ndarray:
    """sum over intervals of h/2 (G[r1] + G[r2]) per example: the rows' weights times G."""
    f, w = self.fields, self.width
    valid = np.arange(w)[None, :] < self.count[:, None]
    weight = np.zeros(self.num_rows, np.float64)
    half = 0.5 * (f['hi'] - f['lo'])[valid]
    np.add.at(weight, f['r1'][valid], half)
    np.add.at(weight, f['r2'][valid], half)
    examples = np.concatenate(self.row_example)
    grads = np.concatenate(self.blocks).reshape(self.num_rows, -1)
    order = np.argsort(examples, kind='stable')
    starts = np.searchsorted(examples[order], np.arange(self.n))
    summed = np.add.reduceat(grads[order].astype(np.float64) * weight[order, None], starts,
                             axis=0)
    return summed.reshape(self.x.shape)
