"""Model-agnostic Shapley methods: Kernel SHAP and sampled (permutation) Shapley.

Both only call `model.predict`, so every input, strings included, is
attributed. A coalition (mask) keeps some features at the example's values
and replaces the others with reference values; all coalitions of all examples
in a batch are evaluated in as few model calls as `max_rows` allows.

Coalitions and permutations are drawn from `seed` alone, the same for every
example, so results never depend on how a runner batches examples.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfx_explain.engine import base
from tfx_explain.engine.model import ModelFunction, to_model_column
from tfx_explain.engine.baselines import BaselineSpec, check_baseline
from tfx_explain.validators import check_int


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
      others = []
      for j, distinct, x_codes, r_codes in coded:
        codes = np.where(sub_masks[None, :, None, j], x_codes[e0:e1, None, None],
                         r_codes[None, None, :]).reshape(ne * ns * b)
        others.append(tf.gather(distinct, codes))
      outputs = model.predict_split(matrix, others).reshape(ne, ns, b, -1)
      chosen = np.take_along_axis(
          outputs, targets[e0:e1, None, None, None].astype(np.int64), axis=3)[..., 0]
      result[e0:e1, m0:m1] = chosen.astype(np.float64).mean(axis=2)
  return result


def shapley_kernel_weight(num_features: int, size: int) -> float:
  return (num_features - 1) / (math.comb(num_features, size) * size * (num_features - size))


def kernel_coalitions(num_features: int, num_samples: int,
                      seed: int) -> Tuple[np.ndarray, np.ndarray, bool]:
  """Coalitions and regression weights for Kernel SHAP.

  With a budget of at least 2^F - 2 every coalition is enumerated with its
  exact Shapley-kernel weight, and the regression returns exact Shapley
  values. Otherwise, as in Lundberg & Lee's implementation, whole coalition
  sizes (small and large first, where the kernel puts its mass) are
  enumerated while the budget allows and the rest are sampled from the kernel
  in complementary pairs.

  Returns:
    (masks [S, F] bool, weights [S] float64, exact)
  """
  m = num_features
  if 2 ** m - 2 <= num_samples:
    masks, weights = [], []
    for size in range(1, m):
      w = shapley_kernel_weight(m, size)
      for subset in itertools.combinations(range(m), size):
        mask = np.zeros(m, bool)
        mask[list(subset)] = True
        masks.append(mask)
        weights.append(w)
    return np.asarray(masks).reshape(-1, m), np.asarray(weights), True

  rng = np.random.default_rng(seed)
  num_sizes = int(math.ceil((m - 1) / 2.0))
  num_paired = int(math.floor((m - 1) / 2.0))
  weight_vector = np.array([(m - 1.0) / (i * (m - i)) for i in range(1, num_sizes + 1)])
  weight_vector[:num_paired] *= 2
  weight_vector /= weight_vector.sum()

  masks, weights = [], []
  left = num_samples
  num_full = 0
  remaining = weight_vector.copy()
  for size in range(1, num_sizes + 1):
    paired = size <= num_paired
    count = math.comb(m, size) * (2 if paired else 1)
    if left * remaining[size - 1] / count < 1.0 - 1e-8:
      break
    num_full += 1
    left -= count
    if remaining[size - 1] < 1.0:
      remaining /= (1 - remaining[size - 1])
    w = weight_vector[size - 1] / math.comb(m, size) / (2.0 if paired else 1.0)
    for subset in itertools.combinations(range(m), size):
      mask = np.zeros(m, bool)
      mask[list(subset)] = True
      masks.append(mask)
      weights.append(w)
      if paired:
        masks.append(~mask)
        weights.append(w)
  num_fixed = len(masks)
  if num_full < num_sizes and left > 0:
    sample_weights = weight_vector.copy()
    sample_weights[:num_paired] /= 2
    sample_weights = sample_weights[num_full:]
    sample_weights /= sample_weights.sum()
    seen: Dict[bytes, int] = {}
    draws = rng.choice(len(sample_weights), 4 * left, p=sample_weights)
    for draw in draws:
      if left <= 0:
        break
      size = int(draw) + num_full + 1
      mask = np.zeros(m, bool)
      mask[rng.permutation(m)[:size]] = True
      pair = [mask, ~mask] if size <= num_paired else [mask]
      for member in pair:
        key = member.tobytes()
        if key in seen:
          weights[seen[key]] += 1.0
        elif left > 0:
          seen[key] = len(masks)
          masks.append(member)
          weights.append(1.0)
          left -= 1
    weights = np.asarray(weights, np.float64)
    weight_left = weight_vector[num_full:].sum()
    weights[num_fixed:] *= weight_left / weights[num_fixed:].sum()
  return np.asarray(masks).reshape(-1, m), np.asarray(weights, np.float64), False


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
  z = masks.astype(np.float64)
  total = full - empty
  if z.shape[1] == 1:
    return total[:, None]
  # Eliminate the last feature with the efficiency constraint.
  z_rest = z[:, :-1] - z[:, -1:]
  y = (values - empty[:, None]) - z[None, :, -1] * total[:, None]
  weighted = z_rest * weights[:, None]
  gram = z_rest.T @ weighted
  rhs = weighted.T @ y.T
  phi_rest = np.linalg.lstsq(gram, rhs, rcond=None)[0].T
  return np.concatenate([phi_rest, (total - phi_rest.sum(axis=1))[:, None]], axis=1)


def _targets_and_prediction(model, features, target):
  outputs = model.predict(features)
  targets = base.resolve_targets(model, outputs, target)
  return targets, outputs[np.arange(len(targets)), targets].astype(np.float64)


class KernelShap(base.AttributionMethod):
  """Kernel SHAP (Lundberg & Lee 2017) with a background sample.

  The value of a coalition is the model output averaged over background rows
  with the coalition's features set to the example's values. Cost per
  example: num_samples x background_size model rows, batched across examples.
  """
  name = 'kernel_shap'
  requires_background = True

  def __init__(self, num_samples: int = 2048, background_size: int = 100, seed: int = 0,
               key: Optional[str] = None):
    owner = 'KernelShap'
    self.num_samples = check_int(owner, 'num_samples', num_samples, minimum=2)
    self.background_size = check_int(owner, 'background_size', background_size)
    self.seed = check_int(owner, 'seed', seed, minimum=0)
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    targets, prediction = _targets_and_prediction(model, features, target)
    f = len(model.input_names)
    # The background is stored in a random order, so its first rows are a uniform sample.
    background = {k: v[:self.background_size] for k, v in reference.background.items()}
    missing = [name for name in model.input_names if name not in background]
    if missing or not background:
      raise base.ConfigError(f'KernelShap: the background sample has no values for {missing}.')
    bg_outputs = model.predict(background)
    empty = bg_outputs[:, targets].mean(axis=0).astype(np.float64)
    masks, weights, exact = kernel_coalitions(f, self.num_samples, self.seed)
    values = coalition_values(model, features, background, masks, targets)
    phi = solve_kernel_regression(masks, weights, values, prediction, empty)
    return base.AttributionResult(
        method=self.label, feature_names=list(model.input_names), attributions=phi,
        target=targets, prediction=prediction, baseline_prediction=empty,
        output_kind=model.output_kind,
        extras={'coalitions': int(len(masks)), 'exact': exact,
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
  phi = np.zeros((values.shape[0], orders.shape[1]), np.float64)
  for p, order in enumerate(orders):
    phi[:, order] += values[:, index[p, 1:]] - values[:, index[p, :-1]]
  return phi / len(orders)


class SampledShapley(base.AttributionMethod):
  """Permutation-sampling Shapley values against a single baseline.

  For each sampled feature order, features switch from the baseline to the
  example's value one at a time; a feature's attribution is the mean change
  in output when it switches. Each path sums exactly to f(x) - f(baseline).
  With antithetic=True every order is paired with its reverse.
  """
  name = 'sampled_shapley'

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
    targets, prediction = _targets_and_prediction(model, features, target)
    names = model.input_names
    f = len(names)
    baseline = reference.baseline_values(self.baseline, names, 'SampledShapley')
    replacement = {name: np.asarray([baseline[name]], dtype=object if not
                                    model.input_dtypes[name].is_floating else np.float32)
                   for name in names}
    orders = self.permutations(f)
    masks, index = prefix_coalitions(orders, f)
    values = coalition_values(model, features, replacement, masks, targets)
    phi = permutation_attributions(values, orders, index)
    empty = values[:, index[0, 0]]
    return base.AttributionResult(
        method=self.label, feature_names=list(names), attributions=phi, target=targets,
        prediction=prediction, baseline_prediction=empty, output_kind=model.output_kind,
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
