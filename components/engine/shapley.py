"""Model-agnostic Shapley methods: Kernel SHAP and sampled (permutation) Shapley.

Both only call `model.predict`, so every input, strings included, is
attributed. A coalition (mask) keeps some features at the example's values
and replaces the others with reference values; all coalitions of all examples
in a batch are evaluated in as few model calls as `max_rows` allows.

Coalitions and permutations are drawn from `seed` alone, the same for every
example, so results never depend on how a runner batches examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from tfx_explain.engine import base
from tfx_explain.engine.model import ModelFunction, to_model_column
from tfx_explain.engine.baselines import BaselineSpec, check_baseline
from tfx_explain.validators import check_choice, check_int, check_number


def coalition_values(model: ModelFunction, features: Mapping[str, np.ndarray],
                     replacement: Mapping[str, np.ndarray], masks: np.ndarray,
                     targets: np.ndarray) -> np.ndarray:
  """v[i, s] = mean_k f(x_i on mask_s, replacement_k elsewhere)[target_i].

  Args:
    model: the model.
    features: name -> [N] example values.
    replacement: name -> [B] reference rows (a background sample, or B=1 baseline).
    masks: [S, F] bool over model.input_names; True keeps the example's value.
    targets: [N] output index per example.
  Returns:
    [N, S] float64.
  """
  names = model.input_names
  n = len(targets)
  s, f = masks.shape
  b = len(next(iter(replacement.values())))
  # Rows are assembled straight into the model's split form: one float matrix,
  # and each other input as integer codes into its few distinct values, so no
  # per-value Python work is done on the N x S x B rows.
  float_index = [names.index(name) for name in model.float_features]
  x_float = np.stack([np.asarray(features[name], np.float32).reshape(-1)
                      for name in model.float_features], axis=1) if float_index else \
      np.zeros((n, 0), np.float32)
  r_float = np.stack([np.asarray(replacement[name], np.float32).reshape(-1)
                      for name in model.float_features], axis=1) if float_index else \
      np.zeros((b, 0), np.float32)
  coded = []   # (input index, distinct values as a tensor, example codes, replacement codes)
  for name in model.other_features:
    x = to_model_column(features[name], model.input_dtypes[name])
    r = to_model_column(replacement[name], model.input_dtypes[name])
    distinct, codes = np.unique(np.concatenate([x, r]), return_inverse=True)
    coded.append((names.index(name), tf.constant(distinct, model.input_dtypes[name]),
                  codes[:n].astype(np.int32), codes[n:].astype(np.int32)))
  result = np.zeros((n, s), np.float64)
  # Chunk over examples, and over masks when one example alone is too big.
  mask_chunk = max(1, min(s, model.max_rows // max(1, b)))
  example_chunk = max(1, model.max_rows // max(1, mask_chunk * b))
  for m0 in range(0, s, mask_chunk):
    m1 = min(s, m0 + mask_chunk)
    sub_masks = masks[m0:m1]
    keep_float = sub_masks[None, :, None, float_index]
    for e0 in range(0, n, example_chunk):
      e1 = min(n, e0 + example_chunk)
      ne, ns = e1 - e0, m1 - m0
      matrix = np.where(keep_float, x_float[e0:e1, None, None, :],
                        r_float[None, None, :, :]).reshape(ne * ns * b, len(float_index))
      codes = [np.where(sub_masks[None, :, None, j], x_codes[e0:e1, None, None],
                        r_codes[None, None, :]).reshape(ne * ns * b)
               for j, _, x_codes, r_codes in coded]
      outputs = model.predict_coded(matrix, codes, [distinct for _, distinct, _, _ in coded]
                                    ).reshape(ne, ns, b, -1)
      chosen = np.take_along_axis(
          outputs, targets[e0:e1, None, None, None].astype(np.int64), axis=3)[..., 0]
      result[e0:e1, m0:m1] = chosen.astype(np.float64).mean(axis=2)
  return result


def shapley_kernel_weight(num_features: int, size: int) -> float:
  return (num_features - 1) / (math.comb(num_features, size) * size * (num_features - size))


SAMPLERS = ('leverage', 'kernel')
AUTO = 'auto'
# Strata up to this many units are enumerated and shuffled; larger ones are drawn lazily.
_ENUMERATE_UNITS = 1 << 14


class CoalitionSequence:
  """Coalitions for Kernel SHAP, stratified by size, sampled without replacement.

  A *unit* is a coalition S with its complement (paired, the default) or S
  alone. Units are grouped into strata by size (paired: min(|S|, F - |S|)),
  and each stratum's units come in one order drawn from the seed alone, so
  the design for a budget is a prefix of the design for any larger budget:
  adaptive runs add coalitions, and no result depends on how examples are
  batched. A budget is shared among strata one unit at a time (Sainte-Lague,
  so allocations only grow with the budget) in proportion to:

    'leverage'  the number of sizes in the stratum: the leverage scores of the
                Shapley regression are uniform over sizes (Musco & Witter,
                ICLR 2025), which puts far more coalitions on middle sizes than
                the kernel does;
    'kernel'    the Shapley kernel's mass on the stratum (Lundberg & Lee's
                sampling distribution, as in shap).

  A stratum whose share covers all its units is enumerated whole (the small
  and large sizes first, under either sampler), and weighted exactly.
  Sampled units are weighted by the kernel times population / sample size of
  their stratum, so the regression estimates the full kernel sum stratum by
  stratum. Paired sampling makes the estimate exact for games without
  interactions above order two (Covert & Lee, AISTATS 2021).
  """

  def __init__(self, num_features: int, seed: int = 0, sampler: str = 'leverage',
               paired: bool = True):
    m = num_features
    self.num_features, self.seed, self.sampler, self.paired = m, seed, sampler, paired
    self.per_unit = 2 if paired else 1
    sizes = range(1, m // 2 + 1) if paired else range(1, m)
    self.strata = list(sizes)
    self.population = {}
    share = {}
    for p in self.strata:
      middle = paired and 2 * p == m
      count = math.comb(m, p) // 2 if middle else math.comb(m, p)
      self.population[p] = count
      coalitions_per_unit = 2 if paired else 1
      if sampler == 'leverage':
        share[p] = 1.0 if (middle or not paired) else 2.0   # sizes the stratum covers
      else:
        share[p] = coalitions_per_unit * count * shapley_kernel_weight(m, p)
    self.share = share
    self.total_coalitions = 2 ** m - 2
    self._drawn: Dict[int, list] = {}
    self._seen: Dict[int, set] = {}
    self._rng: Dict[int, np.random.Generator] = {}
    self._designs: Dict[int, 'CoalitionDesign'] = {}

  # -- allocation -------------------------------------------------------------
  def allocation(self, num_samples: int) -> Dict[int, int]:
    """Units per stratum for a budget of num_samples coalitions (all, past 2^F - 2)."""
    if num_samples >= self.total_coalitions:
      return dict(self.population)
    counts = {p: 0 for p in self.strata}
    # Every unit costs the same (a coalition and, paired, its complement).
    for _ in range(num_samples // self.per_unit):
      open_strata = [p for p in self.strata if counts[p] < self.population[p]]
      if not open_strata:
        break
      counts[max(open_strata, key=lambda p: (self.share[p] / (counts[p] + 0.5), -p))] += 1
    return counts

  # -- units ------------------------------------------------------------------
  def _unit_members(self, p: int, subset) -> List[np.ndarray]:
    mask = np.zeros(self.num_features, bool)
    mask[list(subset)] = True
    return [mask, ~mask] if self.paired else [mask]

  def units(self, p: int, count: int) -> List[tuple]:
    """The first `count` units of stratum p, as sorted tuples of the kept players.

    Units are cut from random permutations of the players, F // p disjoint
    blocks of p at a time (repeats skipped): each is a uniform draw from the
    stratum, and together they hold every player about equally often, which
    takes out the variance that uneven counts would add.
    """
    drawn = self._drawn.setdefault(p, [])
    m = self.num_features
    middle = self.paired and 2 * p == m
    if p not in self._rng:
      self._rng[p] = np.random.default_rng([self.seed, p, int(self.paired)])
      self._seen[p] = set()
    rng, seen = self._rng[p], self._seen[p]
    misses = 0
    while len(drawn) < min(count, self.population[p]):
      if misses > 64:
        if self.population[p] <= _ENUMERATE_UNITS:
          # Nearly every unit is drawn already: the rest in random order.
          rest = [c for c in itertools.combinations(range(m), p)
                  if (not middle or c[0] == 0) and c not in seen]
          for i in rng.permutation(len(rest)):
            seen.add(rest[i])
            drawn.append(rest[i])
          break
      order = rng.permutation(m)
      for start in range(0, m - p + 1, p):
        subset = np.sort(order[start:start + p])
        if middle and subset[0] != 0:
          subset = np.setdiff1d(np.arange(m), subset)
        key = tuple(int(i) for i in subset)
        if key in seen:
          misses += 1
          continue
        misses = 0
        seen.add(key)
        drawn.append(key)
        if middle:
          break   # the other block is this unit's complement
    return drawn[:count]

  def design(self, num_samples: int) -> 'CoalitionDesign':
    """Masks, regression weights and strata of the design for a budget (kept for reuse)."""
    if num_samples not in self._designs:
      self._designs[num_samples] = self._design(num_samples)
    return self._designs[num_samples]

  def _design(self, num_samples: int) -> 'CoalitionDesign':
    m = self.num_features
    allocation = self.allocation(num_samples)
    masks, weights, unit_of, stratum_of_unit, position = [], [], [], [], []
    unit = 0
    for p in self.strata:
      count = allocation[p]
      if not count:
        continue
      scale = self.population[p] / count
      for subset in self.units(p, count):
        for q, mask in enumerate(self._unit_members(p, subset)):
          masks.append(mask)
          weights.append(shapley_kernel_weight(m, int(mask.sum())) * scale)
          unit_of.append(unit)
          position.append(q)
        stratum_of_unit.append(p)
        unit += 1
    exact = all(allocation[p] == self.population[p] for p in self.strata)
    return CoalitionDesign(
        masks=np.asarray(masks, bool).reshape(-1, m), weights=np.asarray(weights, np.float64),
        unit=np.asarray(unit_of, np.int64), position=np.asarray(position, np.int64),
        unit_stratum=np.asarray(stratum_of_unit, np.int64),
        population={p: self.population[p] for p in self.strata if allocation[p]},
        sampled={p: allocation[p] for p in self.strata if allocation[p]}, exact=exact)


@dataclasses.dataclass
class CoalitionDesign:
  masks: np.ndarray          # [S, F] bool
  weights: np.ndarray        # [S] regression weights (kernel x population / sampled)
  unit: np.ndarray           # [S] unit of each coalition
  position: np.ndarray       # [S] 0, or 1 for a unit's complement
  unit_stratum: np.ndarray   # [U] stratum of each unit
  population: Dict[int, int]
  sampled: Dict[int, int]
  exact: bool


def kernel_coalitions(num_features: int, num_samples: int, seed: int,
                      sampler: str = 'leverage',
                      paired: bool = True) -> Tuple[np.ndarray, np.ndarray, bool]:
  """(masks [S, F] bool, weights [S], exact) of KernelShap's design for a budget."""
  design = CoalitionSequence(num_features, seed, sampler, paired).design(num_samples)
  return design.masks, design.weights, design.exact


def solve_kernel_regression(masks: np.ndarray, weights: np.ndarray, values: np.ndarray,
                            full: np.ndarray, empty: np.ndarray) -> np.ndarray:
  """Weighted least squares under sum(phi) = f(x) - E[f], for all examples at once.

  Args:
    masks: [S, F] coalitions shared by all examples.
    weights: [S] kernel weights.
    values: [N, S] coalition values.
    full: [N] f(x).
    empty: [N] value of the empty coalition.
  Returns:
    phi [N, F].
  """
  return kernel_regression(masks, weights, values, full, empty)[0]


def interaction_terms(num_features: int, order: int) -> List[Tuple[int, ...]]:
  """Groups of up to `order` players: the terms of a k-additive game."""
  return [t for k in range(1, order + 1) for t in itertools.combinations(range(num_features), k)]


def interaction_count(num_features: int, order: int) -> int:
  return sum(math.comb(num_features, k) for k in range(1, order + 1))


class _GameFit:
  """Weighted least squares of a k-additive game under efficiency, for given coalitions."""

  def __init__(self, masks: np.ndarray, order: int):
    z = masks.astype(np.float64)
    self.num_features = z.shape[1]
    terms = interaction_terms(self.num_features, order)
    self.basis = z if order == 1 else np.stack(
        [z[:, list(t)].prod(axis=1) for t in terms], axis=1)          # [S, T]
    self.shapley_map = np.zeros((len(terms), self.num_features))     # phi = c @ map
    for i, t in enumerate(terms):
      self.shapley_map[i, list(t)] = 1.0 / len(t)

  def solve(self, weights: np.ndarray):
    """(solve [T, T], k [T]): coefficients c = (y * w) @ X @ solve + total x k."""
    weighted = self.basis * weights[:, None]
    gram_inverse = np.linalg.pinv(self.basis.T @ weighted)
    # The constrained solution is linear in the values: c = P c0 + k total with
    # c0 = G^-1 X'W y, k = G^-1 1 / (1'G^-1 1) and P = I - k 1'.
    ones = np.ones(self.basis.shape[1])
    k = gram_inverse @ ones / (ones @ gram_inverse @ ones)
    return gram_inverse @ (np.eye(len(ones)) - np.outer(k, ones)).T, k


def kernel_regression(masks, weights, values, full, empty,
                      design: Optional[CoalitionDesign] = None, order: int = 1):
  """phi [N, F] and, given the sampling design, standard errors [N, F] (else None).

  Fits v(S) - v(empty) = sum over groups T in S of c_T, groups up to `order`
  players (a k-additive game: Pelegrina et al. 2023), by weighted least
  squares under v(all) - v(empty) = sum c_T, and returns the fitted game's
  exact Shapley values, phi_j = sum over T containing j of c_T / |T|. Order 1
  is Kernel SHAP's regression. Paired coalitions already make order 1 exact
  for games of order 2; order 3 also fits three-way interactions.

  Standard errors: the estimator linearised around the solution (the sandwich
  form of weighted least squares, with leave-one-out residuals), its variance
  added up stratum by stratum with the finite-population correction of
  sampling without replacement, so an enumerated stratum contributes none.
  With many terms per coalition (a three-way fit below about 3 coalitions per
  term) they come out too small; KernelShap's 'auto' order avoids that. A
  stratum with a single sampled unit gives no variance estimate: NaN.
  """
  total = full - empty
  n, f = values.shape[0], masks.shape[1]
  if f == 1:
    return total[:, None], (np.zeros((n, 1)) if design is not None else None)
  fit = _GameFit(masks, order)
  y = values - empty[:, None]
  solve, k = fit.solve(weights)
  coefficients = (y @ (fit.basis * weights[:, None])) @ solve + total[:, None] * k[None, :]
  phi = coefficients @ fit.shapley_map
  if design is None:
    return phi, None
  sampled_strata = [p for p in design.population if design.sampled[p] < design.population[p]]
  if any(design.sampled[p] < 2 for p in sampled_strata):
    return phi, np.full((n, f), np.nan)
  if not sampled_strata:
    return phi, np.zeros((n, f))
  return phi, _sandwich_errors(fit, weights, y, coefficients, solve, design, sampled_strata)


def _sandwich_errors(fit, weights, y, coefficients, solve, design, sampled_strata):
  n, f = len(y), fit.num_features
  residual = y - coefficients @ fit.basis.T                           # [N, S]
  influence = fit.basis @ solve @ fit.shapley_map                     # [S, F], unweighted
  # Residuals as if each coalition had been left out of the fit (HC3, MacKinnon &
  # White 1985): a fit with many terms pulls the residuals of the coalitions it saw
  # towards zero, which would make the errors too small.
  leverage = np.einsum('st,st->s', fit.basis @ solve, fit.basis) * weights
  residual /= np.maximum(1.0 - leverage, 1e-3)[None, :]
  variance = np.zeros((n, f))
  for p in sampled_strata:
    sampled, population = design.sampled[p], design.population[p]
    in_stratum = design.unit_stratum[design.unit] == p
    # Per unit g_u = sum over its coalitions c of w_c influence_c residual_c; the
    # stratum adds (1 - c/N) c S^2(g), the weights already scaled by N/c.
    members = [np.nonzero(in_stratum & (design.position == q))[0] for q in range(2)]
    members = [idx for idx in members if len(idx)]
    sum_g = np.zeros((n, f))
    sum_g2 = np.zeros((n, f))
    for a in members:
      sum_g += (residual[:, a] * weights[a]) @ influence[a]
      for b in members:
        sum_g2 += (residual[:, a] * residual[:, b] * weights[a] * weights[b]) @ (
            influence[a] * influence[b])
    sample_variance = (sum_g2 - sum_g ** 2 / sampled) / (sampled - 1)
    variance += (1.0 - sampled / population) * sampled * np.maximum(sample_variance, 0.0)
  return np.sqrt(variance)


def _targets_and_prediction(method, model, features, target):
  outputs = method.outputs_at(model, features)
  targets = base.resolve_targets(model, outputs, target)
  return targets, outputs[np.arange(len(targets)), targets].astype(np.float64)


class KernelShap(base.AttributionMethod):
  """Kernel SHAP (Lundberg & Lee 2017) with a background sample, and standard errors.

  The value of a coalition is the model output averaged over background rows
  with the coalition's features set to the example's values; Shapley values
  are the kernel-weighted regression of those values (exact, by enumeration,
  once num_samples >= 2^F - 2). Coalitions come from a `CoalitionSequence`:
  stratified by size, paired with their complements and drawn without
  replacement, allocated by `sampler` ('leverage' by default: measured in
  benchmarks/kernel_shap.py against 'kernel' and against shap). Every result
  carries the standard error of each attribution.

  The regression fits an additive game (Kernel SHAP's) or, with
  interactions=3, one with up to three-way terms, whose Shapley values are
  exact in closed form: on a budget of three coalitions per term and more it
  has several times less error ('auto' picks it then; `kernel_regression`).

  num_samples='auto' spends coalitions per example until every standard error
  of the example is at most `target_error` (output units), doubling from
  `initial_samples` up to `max_samples`; `steps` records the coalitions each
  example used. Each example's result depends only on the seed and its own
  values, never on the batch. Cost per example: coalitions x background_size
  model rows, batched across examples.
  """
  name = 'kernel_shap'
  requires_background = True
  reports_standard_errors = True

  def __init__(self, num_samples: Union[int, str] = 2048, background_size: int = 100,
               seed: int = 0, sampler: str = 'leverage', paired: bool = True,
               interactions: Union[int, str] = AUTO, target_error: Optional[float] = None,
               initial_samples: int = 64, max_samples: int = 16384, key: Optional[str] = None):
    owner = 'KernelShap'
    if num_samples == AUTO:
      if target_error is None:
        raise base.ConfigError("KernelShap: num_samples='auto' needs target_error= (the largest "
                               'standard error to accept, in model output units).')
      self.num_samples = AUTO
    else:
      self.num_samples = check_int(owner, 'num_samples', num_samples, minimum=2)
    self.background_size = check_int(owner, 'background_size', background_size)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.sampler = check_choice(owner, 'sampler', sampler, SAMPLERS)
    self.paired = bool(paired)
    self.interactions = check_choice(owner, 'interactions', interactions, (AUTO, 1, 2, 3))
    self.target_error = None if target_error is None else check_number(
        owner, 'target_error', target_error, low=0, low_open=True)
    self.initial_samples = check_int(owner, 'initial_samples', initial_samples, minimum=2)
    self.max_samples = check_int(owner, 'max_samples', max_samples, minimum=2)
    self.key = key

  def sequence(self, num_features: int) -> CoalitionSequence:
    """The coalitions for this many features; drawn once and kept, as every batch uses them."""
    cache = self.__dict__.setdefault('_sequences', {})
    if num_features not in cache:
      cache[num_features] = CoalitionSequence(num_features, self.seed, self.sampler, self.paired)
    return cache[num_features]

  def order(self, num_features: int, design: CoalitionDesign) -> int:
    """The interaction order fitted: 'auto' fits three-way terms once the design holds
    three coalitions per term (below that their errors are not reliable), order 1 when
    every coalition is enumerated (exact either way)."""
    if self.interactions != AUTO:
      return self.interactions
    if design.exact or len(design.masks) < 3 * interaction_count(num_features, 3):
      return 1
    return 3

  def budgets(self, num_features: int) -> List[int]:
    """Coalition budgets tried in turn: one for a fixed num_samples, doubling for 'auto'."""
    everything = 2 ** num_features - 2 if num_features < 62 else self.max_samples + 1
    if self.num_samples != AUTO:
      return [min(self.num_samples, everything)]
    budgets, budget = [], min(self.initial_samples, everything)
    while True:
      budgets.append(budget)
      if budget >= min(self.max_samples, everything):
        return budgets
      budget = min(2 * budget, self.max_samples, everything)

  def _attribute(self, model, features, reference, target, labels, example_ids):
    targets, prediction = _targets_and_prediction(self, model, features, target)
    names = model.input_names
    f = len(names)
    # The background is stored in a random order, so its first rows are a uniform sample.
    background = {k: v[:self.background_size] for k, v in reference.background.items()}
    missing = [name for name in names if name not in background]
    if missing or not background:
      raise base.ConfigError(f'KernelShap: the background sample has no values for {missing}.')
    bg_outputs = model.predict(background)
    empty = bg_outputs[:, targets].mean(axis=0).astype(np.float64)
    n = len(targets)
    sequence = self.sequence(f)
    phi = np.zeros((n, f))
    errors = np.full((n, f), np.nan)
    steps = np.zeros(n, np.int64)
    active = np.arange(n)
    values = np.zeros((n, 0))           # coalition values computed so far, by column
    column: Dict[bytes, int] = {}       # coalition -> its column in values
    exact = False
    for budget in self.budgets(f):
      design = sequence.design(budget)
      # A larger budget's design holds the smaller one's coalitions: evaluate only the
      # new ones, for the examples still running.
      new = [i for i, mask in enumerate(design.masks) if mask.tobytes() not in column]
      if new:
        subset = features if len(active) == n else {
            k: np.asarray(v)[active] for k, v in features.items()}
        grown = np.zeros((n, values.shape[1] + len(new)))
        grown[:, :values.shape[1]] = values
        grown[active, values.shape[1]:] = coalition_values(
            model, subset, background, design.masks[new], targets[active])
        for offset, i in enumerate(new):
          column[design.masks[i].tobytes()] = values.shape[1] + offset
        values = grown
      in_design = np.asarray([column[mask.tobytes()] for mask in design.masks], np.int64)
      order = self.order(f, design)
      estimate, error = kernel_regression(
          design.masks, design.weights, values[np.ix_(active, in_design)], prediction[active],
          empty[active], design, order)
      phi[active], errors[active], steps[active] = estimate, error, len(design.masks)
      exact = design.exact
      if self.num_samples != AUTO:
        break
      # NaN (not estimable yet) counts as above the target.
      done = np.nan_to_num(error, nan=np.inf).max(axis=1) <= self.target_error
      active = active[~done]
      if not len(active):
        break
    return base.AttributionResult(
        method=self.label, feature_names=list(names), attributions=phi,
        target=targets, prediction=prediction, baseline_prediction=empty,
        output_kind=model.output_kind, standard_errors=errors, steps=steps,
        extras={'coalitions': int(steps.max(initial=0)), 'exact': bool(exact),
                'interactions': int(order),
                'background_size': int(len(bg_outputs))})


def permutation_orders(num_players: int, num_permutations: int, seed: int,
                       antithetic: bool = True) -> np.ndarray:
  """Orders of the players drawn from `seed` alone; antithetic pairs each with its reverse."""
  rng = np.random.default_rng(seed)
  if antithetic:
    half = [rng.permutation(num_players) for _ in range((num_permutations + 1) // 2)]
    orders = [p for order in half for p in (order, order[::-1])][:num_permutations]
  else:
    orders = [rng.permutation(num_players) for _ in range(num_permutations)]
  return np.asarray(orders)


def prefix_coalitions(orders: np.ndarray, num_players: int):
  """Prefix coalitions of every order, deduplicated.

  Returns (masks [S, k] bool, index [P, k + 1]): masks[index[p, j]] holds the
  first j players of orders[p], so the empty and full coalitions (and shared
  prefixes) are evaluated once.
  """
  unique: Dict[bytes, int] = {}
  mask_list = []
  index = np.zeros((len(orders), num_players + 1), np.int64)
  for p, order in enumerate(orders):
    mask = np.zeros(num_players, bool)
    for j in range(num_players + 1):
      if j:
        mask[order[j - 1]] = True
      key = mask.tobytes()
      if key not in unique:
        unique[key] = len(mask_list)
        mask_list.append(mask.copy())
      index[p, j] = unique[key]
  return np.asarray(mask_list).reshape(-1, num_players), index


def permutation_attributions(values: np.ndarray, orders: np.ndarray,
                             index: np.ndarray) -> np.ndarray:
  """Mean marginal contribution of each player along the orders; values [N, S]."""
  return permutation_contributions(values, orders, index).mean(axis=0)


def permutation_contributions(values: np.ndarray, orders: np.ndarray,
                              index: np.ndarray) -> np.ndarray:
  """[P, N, k]: each player's marginal contribution along each order."""
  contributions = np.zeros((len(orders), values.shape[0], orders.shape[1]), np.float64)
  for p, order in enumerate(orders):
    contributions[p][:, order] = values[:, index[p, 1:]] - values[:, index[p, :-1]]
  return contributions


def permutation_standard_errors(contributions: np.ndarray, antithetic: bool) -> np.ndarray:
  """[N, k] standard error of the mean contribution; an order and its reverse are one draw."""
  draws = len(contributions)
  if antithetic and draws >= 2:
    pairs = draws // 2
    units = contributions[:2 * pairs].reshape(pairs, 2, *contributions.shape[1:]).mean(axis=1)
  else:
    units = contributions
  if len(units) < 2:
    return np.full(contributions.shape[1:], np.nan)
  return units.std(axis=0, ddof=1) / np.sqrt(len(units))


class SampledShapley(base.AttributionMethod):
  """Permutation-sampling Shapley values against a single baseline.

  For each sampled feature order, features switch from the baseline to the
  example's value one at a time; a feature's attribution is the mean change
  in output when it switches. Each path sums exactly to f(x) - f(baseline).
  With antithetic=True every order is paired with its reverse. Standard
  errors are those of the mean over orders (a pair counted as one draw).
  """
  name = 'sampled_shapley'
  reports_standard_errors = True

  def __init__(self, num_permutations: int = 32, baseline: BaselineSpec = 'mean',
               antithetic: bool = True, seed: int = 0, key: Optional[str] = None):
    owner = 'SampledShapley'
    self.num_permutations = check_int(owner, 'num_permutations', num_permutations)
    self.baseline = check_baseline(owner, baseline)
    self.antithetic = bool(antithetic)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  def permutations(self, num_features: int) -> np.ndarray:
    return permutation_orders(num_features, self.num_permutations, self.seed, self.antithetic)

  def _attribute(self, model, features, reference, target, labels, example_ids):
    targets, prediction = _targets_and_prediction(self, model, features, target)
    names = model.input_names
    f = len(names)
    baseline = reference.baseline_values(self.baseline, names, 'SampledShapley')
    replacement = {name: np.asarray([baseline[name]], dtype=object if not
                                    model.input_dtypes[name].is_floating else np.float32)
                   for name in names}
    orders = self.permutations(f)
    masks, index = prefix_coalitions(orders, f)
    values = coalition_values(model, features, replacement, masks, targets)
    contributions = permutation_contributions(values, orders, index)
    empty = values[:, index[0, 0]]
    return base.AttributionResult(
        method=self.label, feature_names=list(names), attributions=contributions.mean(axis=0),
        target=targets, prediction=prediction, baseline_prediction=empty,
        output_kind=model.output_kind,
        standard_errors=permutation_standard_errors(contributions, self.antithetic),
        extras={'model_rows_per_example': int(len(masks))})


# Up to this many players, subset Shapley values are exact (2^k coalitions per example).
MAX_EXACT_PLAYERS = 10


def subset_shapley(model: ModelFunction, features: Mapping[str, np.ndarray],
                   replacement: Mapping[str, Any], players, keep_others: bool,
                   targets: np.ndarray, seed: int = 0, num_permutations: int = 32):
  """Shapley values of some features (players) while the others stay fixed.

  The others are held at the example's values (keep_others) or at the
  replacement's; a player left out of a coalition takes the replacement value
  (one row, e.g. a baseline). Exact by enumeration up to MAX_EXACT_PLAYERS
  players, else from antithetic permutations drawn from `seed` alone.

  Returns (phi [N, k], v(no player) [N], v(all players) [N], exact).
  """
  names = model.input_names
  players = list(players)
  k = len(players)
  row = {name: np.asarray([replacement[name]]) for name in names}
  exact = k <= MAX_EXACT_PLAYERS
  if exact:
    # Coalition c holds the players whose bits are set in c: 0 is none, 2^k - 1 all.
    codes = np.arange(2 ** k)
    member = ((codes[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)   # [2^k, k]
  else:
    orders = permutation_orders(k, num_permutations, seed)
    member, index = prefix_coalitions(orders, k)
  masks = np.full((len(member), len(names)), keep_others, bool)
  masks[:, players] = member
  values = coalition_values(model, features, row, masks, targets)
  if not exact:
    phi = permutation_attributions(values, orders, index)
    return phi, values[:, index[0, 0]], values[:, index[0, -1]], False
  phi = np.zeros((len(targets), k), np.float64)
  sizes = member.sum(axis=1)
  for j in range(k):
    without = codes[~member[:, j]]
    weight = np.asarray([math.factorial(s) * math.factorial(k - s - 1) for s in sizes[without]],
                        np.float64) / math.factorial(k)
    phi[:, j] = ((values[:, without | (1 << j)] - values[:, without]) * weight).sum(axis=1)
  return phi, values[:, 0], values[:, -1], True
