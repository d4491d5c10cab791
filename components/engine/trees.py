"""Decision forests as arrays, and their exact Shapley values (Tree SHAP), vectorised.

A `Forest` is what any tree learner writes, read into numpy: per tree, nodes
with a split (a numerical threshold, `x >= threshold` goes to the positive
child, or a set of categories that goes there), leaf values in the ensemble's
output units and each node's cover (training examples that reached it). Its
raw output is `bias + sum of leaf values`; the served output applies `link`
(softmax or sigmoid for gradient boosted classifiers, identity for random
forests, whose leaf values are already the averaged class probabilities).

Tree SHAP explains the raw output. Every leaf contributes a *product game*
over the features its path tests: with a_j whether the example satisfies the
path's conditions on feature j and b_j the same for what stands in when j is
absent,

    v_leaf(S) = value * prod_{j in S} a_j * prod_{j not in S} b_j,

and Shapley values add over leaves. `path_dependent` sets b_j to the fraction
of training cover that follows the path on j (Lundberg et al. 2018: the
conditional expectation the trees themselves record); `interventional` sets
b_j to whether a background row satisfies it, averaged over the background
(exact Shapley values of E_r[f(x_S, r_rest)], Lundberg et al. 2020). The
Shapley value of a product game is (a_i - b_i) times a weighted sum of the
coefficients of prod_{j != i} (b_j + a_j t); with binary a and b (the
interventional case) it has a closed form in two counts. Both are computed
for a batch of examples and all leaves at once, in chunks of leaves.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, List, Mapping, Optional

import numpy as np

LINK_IDENTITY = 'identity'
LINK_SOFTMAX = 'softmax'
LINK_SIGMOID = 'sigmoid'
LINKS = (LINK_IDENTITY, LINK_SOFTMAX, LINK_SIGMOID)

# Cells (examples x leaves x path slots) per chunk: bounds memory at ~100 MB.
_CHUNK_CELLS = 1 << 22
# Distinct features on one root-to-leaf path: bits of an int64 beside a leaf index.
MAX_PATH_FEATURES = 40


class ForestError(ValueError):
  """A forest that cannot be read or explained as given."""


@dataclasses.dataclass
class Tree:
  """One tree as node arrays; node 0 is the root.

  feature[i] is the index (into Forest.feature_names) node i tests, -1 at a
  leaf. A numerical node sends x >= threshold[i] to positive[i], else to
  negative[i]; a categorical node (categories[i] not None) sends a value in
  categories[i] (category codes) to positive[i]. value[i] is [K] in the
  ensemble's output units (leaves; internal nodes are not read), cover[i] the
  training weight that reached node i.
  """
  feature: np.ndarray
  threshold: np.ndarray
  positive: np.ndarray
  negative: np.ndarray
  value: np.ndarray
  cover: np.ndarray
  categories: List[Optional[frozenset]] = None

  def __post_init__(self):
    n = len(self.feature)
    self.feature = np.asarray(self.feature, np.int64)
    self.threshold = np.asarray(self.threshold, np.float64)
    self.positive = np.asarray(self.positive, np.int64)
    self.negative = np.asarray(self.negative, np.int64)
    self.value = np.asarray(self.value, np.float64).reshape(n, -1)
    self.cover = np.asarray(self.cover, np.float64)
    if self.categories is None:
      self.categories = [None] * n

  @property
  def has_covers(self) -> bool:
    return bool(np.all(self.cover[self.feature >= 0] > 0))


@dataclasses.dataclass
class Forest:
  """A tree ensemble: raw output = bias + sum over trees of the leaf reached.

  feature_kinds[f] is 'numerical' or 'categorical'; a categorical feature's
  values are mapped to codes by `dictionaries[f]` (value -> code; unknown
  values get `unknown_code`, as the learner's out-of-dictionary item).
  """
  trees: List[Tree]
  feature_names: List[str]
  feature_kinds: List[str]
  bias: np.ndarray
  link: str = LINK_IDENTITY
  dictionaries: Dict[str, Dict[object, int]] = dataclasses.field(default_factory=dict)
  unknown_code: int = 0
  description: str = ''
  classification: bool = False   # served outputs are class probabilities

  def __post_init__(self):
    self.bias = np.asarray(self.bias, np.float64).reshape(-1)
    if self.link not in LINKS:
      raise ForestError(f'Unknown link {self.link!r}; one of {LINKS}.')
    widths = {t.value.shape[1] for t in self.trees}
    if len(widths) != 1 or widths != {len(self.bias)}:
      raise ForestError(f'Leaf values have widths {sorted(widths)} but the bias has '
                        f'{len(self.bias)}: every tree must write every output.')
    self._paths = None

  @property
  def num_outputs(self) -> int:
    return len(self.bias)

  # -- evaluation --------------------------------------------------------------
  def encode(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """[N, F] float64: numerical values as they are, categories as their codes."""
    columns = []
    for name, kind in zip(self.feature_names, self.feature_kinds):
      if name not in features:
        raise ForestError(f'The forest tests feature {name!r}, which the examples do not have '
                          f'(they have {sorted(features)}).')
      values = np.asarray(features[name]).reshape(-1)
      _check_present(name, kind, values)
      if kind == 'categorical':
        dictionary = self.dictionaries.get(name, {})
        codes = np.fromiter((dictionary.get(_category_key(v), self.unknown_code)
                             for v in values), np.float64, len(values))
        columns.append(codes)
      else:
        columns.append(values.astype(np.float64))
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0))

  def leaf_of(self, tree: Tree, x: np.ndarray) -> np.ndarray:
    """[N] the leaf each encoded row reaches in `tree`."""
    node = np.zeros(len(x), np.int64)
    while True:
      inner = tree.feature[node] >= 0
      if not inner.any():
        return node
      rows = np.nonzero(inner)[0]
      at = node[rows]
      go = self._goes_positive(tree, at, x[rows, tree.feature[at]])
      node[rows] = np.where(go, tree.positive[at], tree.negative[at])

  @staticmethod
  def _goes_positive(tree: Tree, nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
    go = values >= tree.threshold[nodes]
    for node in np.unique(nodes):
      allowed = tree.categories[node]
      if allowed is not None:
        at = nodes == node
        go[at] = _member(values[at], allowed)
    return go

  def raw(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """[N, K] bias + sum of the leaves reached: the output Tree SHAP explains."""
    return self.raw_from_encoded(self.encode(features))

  def raw_from_encoded(self, x: np.ndarray) -> np.ndarray:
    total = np.tile(self.bias, (len(x), 1))
    for tree in self.trees:
      total += tree.value[self.leaf_of(tree, x)]
    return total

  def predict(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """[N, K] the served output: link(raw)."""
    return apply_link(self.raw(features), self.link)

  # -- leaves as paths ---------------------------------------------------------
  @property
  def paths(self) -> 'LeafPaths':
    if self._paths is None:
      self._paths = LeafPaths.of(self)
    return self._paths


def apply_link(raw: np.ndarray, link: str) -> np.ndarray:
  if link == LINK_SOFTMAX:
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
  if link == LINK_SIGMOID:
    return 1.0 / (1.0 + np.exp(-raw))
  return raw


def _category_key(value):
  """A value as the learner's dictionary keys it: a string (integers too: 3 -> '3')."""
  if isinstance(value, bytes):
    return value.decode('utf-8', 'replace')
  if isinstance(value, np.generic):
    value = value.item()
  return value if isinstance(value, str) else str(value)


def _check_present(name: str, kind: str, values: np.ndarray) -> None:
  """Missing values take each split's own missing-value branch, which is not modelled."""
  if kind == 'numerical':
    missing = np.isnan(values.astype(np.float64)).sum()
  else:
    missing = sum(1 for v in values if v is None or v in (b'', ''))
  if missing:
    raise ForestError(
        f'{missing} value(s) of forest input {name!r} are missing (NaN or empty); a tree sends '
        'them down a branch chosen at training, which Tree SHAP here does not follow. Impute '
        'them before the model (in the Transform), or explain with KernelShap.')


@dataclasses.dataclass
class LeafPaths:
  """Every leaf of a forest as the product game of its path, padded to D slots.

  feature[l, d]   the d-th distinct feature the path to leaf l tests (-1: padding)
  low, high       numerical: the path holds x in [low, high)
  allowed[l, d]   categorical: index into `category_sets`, -1 when numerical
  fraction[l, d]  training cover that follows the path on that feature: the product
                  of child / parent cover over the path's splits on it
  value[l]        [K] the leaf's value; reach[l] its cover / the root's
  """
  feature: np.ndarray
  low: np.ndarray
  high: np.ndarray
  allowed: np.ndarray
  category_sets: List[frozenset]
  fraction: np.ndarray
  value: np.ndarray
  reach: np.ndarray

  @classmethod
  def of(cls, forest: Forest) -> 'LeafPaths':
    rows = []   # (conditions by feature, value, reach) per leaf
    universe = _category_universes(forest)
    for tree in forest.trees:
      root_cover = tree.cover[0]
      stack = [(0, {})]   # node, feature -> [low, high, allowed set or None, fraction]
      while stack:
        node, conditions = stack.pop()
        f = tree.feature[node]
        if f < 0:
          rows.append((conditions, tree.value[node],
                       tree.cover[node] / root_cover if root_cover > 0 else 1.0))
          continue
        for child, positive in ((tree.positive[node], True), (tree.negative[node], False)):
          held = {k: list(v) for k, v in conditions.items()}
          low, high, allowed, fraction = held.get(f, [-np.inf, np.inf, None, 1.0])
          categories = tree.categories[node]
          if categories is None:
            if positive:
              low = max(low, tree.threshold[node])
            else:
              high = min(high, tree.threshold[node])
          else:
            held_so_far = universe[f] if allowed is None else allowed
            allowed = held_so_far & categories if positive else held_so_far - categories
          held[f] = [low, high, allowed, fraction * tree.cover[child] / tree.cover[node]]
          stack.append((child, held))
    depth = max([len(c) for c, _, _ in rows] + [1])
    if depth > MAX_PATH_FEATURES:
      raise ForestError(f'A path tests {depth} distinct features; Tree SHAP here keeps a '
                        f'path\'s features as bits of one integer, at most '
                        f'{MAX_PATH_FEATURES}. Explain this forest with KernelShap.')
    n = len(rows)
    feature = np.full((n, depth), -1, np.int64)
    low = np.full((n, depth), -np.inf)
    high = np.full((n, depth), np.inf)
    allowed = np.full((n, depth), -1, np.int64)
    fraction = np.ones((n, depth))
    sets: List[frozenset] = []
    set_index: Dict[object, int] = {}
    values = np.zeros((n, forest.num_outputs))
    reach = np.zeros(n)
    for l, (conditions, value, leaf_reach) in enumerate(rows):
      for d, (f, (lo, hi, categories, frac)) in enumerate(sorted(conditions.items())):
        feature[l, d], low[l, d], high[l, d], fraction[l, d] = f, lo, hi, frac
        if categories is not None:
          key = categories
          if key not in set_index:
            set_index[key] = len(sets)
            sets.append(key)
          allowed[l, d] = set_index[key]
      values[l], reach[l] = value, leaf_reach
    return cls(feature, low, high, allowed, sets, fraction, values, reach)

  @property
  def num_leaves(self) -> int:
    return len(self.feature)

  def satisfied(self, x: np.ndarray, leaves: slice) -> np.ndarray:
    """[N, L, D] whether each encoded row meets each slot's condition (padding: True)."""
    feature = self.feature[leaves]
    column = x[:, np.maximum(feature, 0)]                       # [N, L, D]
    ok = (column >= self.low[leaves]) & (column < self.high[leaves])
    allowed = self.allowed[leaves]
    categorical = np.nonzero(allowed >= 0)
    if len(categorical[0]):
      for k in np.unique(allowed[categorical]):   # the sets these leaves test
        at = allowed[categorical] == k
        where = (categorical[0][at], categorical[1][at])
        codes = column[:, where[0], where[1]]
        ok[:, where[0], where[1]] = _member(codes, self.category_sets[k])
    ok |= (feature < 0)[None]
    return ok


def _category_universes(forest: Forest) -> Dict[int, frozenset]:
  """feature index -> every code an encoded value of that categorical feature can take:
  its dictionary's codes, the out-of-dictionary code and any code a split names."""
  universe: Dict[int, set] = {}
  for f, (name, kind) in enumerate(zip(forest.feature_names, forest.feature_kinds)):
    if kind == 'categorical':
      universe[f] = set(forest.dictionaries.get(name, {}).values()) | {forest.unknown_code}
  for tree in forest.trees:
    for node, categories in enumerate(tree.categories):
      if categories is not None:
        universe.setdefault(int(tree.feature[node]), set()).update(categories)
  return {f: frozenset(codes) for f, codes in universe.items()}


def _member(codes: np.ndarray, categories: frozenset) -> np.ndarray:
  return np.isin(codes, np.asarray(sorted(categories), np.float64))


# -- Shapley values of product games --------------------------------------------------

@functools.lru_cache(maxsize=None)
def _shapley_weights(depth: int) -> np.ndarray:
  """[d + 1, depth] w[d, s] = s! (d - 1 - s)! / d! for a game of d players, coalition s."""
  w = np.zeros((depth + 1, max(depth, 1)))
  for d in range(1, depth + 1):
    for s in range(d):
      w[d, s] = math.factorial(s) * math.factorial(d - 1 - s) / math.factorial(d)
  return w


def product_game_shapley(a: np.ndarray, b: np.ndarray, active: np.ndarray) -> np.ndarray:
  """[..., D] Shapley values of v(S) = prod_{S} a_j prod_{not S} b_j over the active slots.

  a, b: [..., D]; inactive slots (padding) are not players. Each player's value is
  (a_i - b_i) * sum_s w(s, d) c_s, c the coefficients of prod_{j != i} (b_j + a_j t):
  the full product divided by player i's factor: by b_i when a_i = 0, else by
  synthetic division from the top, whose errors are damped by b_i <= 1.
  """
  depth = a.shape[-1]
  a = np.where(active, a, 0.0)
  b = np.where(active, b, 1.0)       # padding: the factor 1, a player of no consequence
  players = active.sum(axis=-1)       # [...]
  # Full product prod_j (b_j + a_j t), coefficients [..., D + 1].
  poly = np.zeros(a.shape[:-1] + (depth + 1,))
  poly[..., 0] = 1.0
  for j in range(depth):
    shifted = np.zeros_like(poly)
    shifted[..., 1:] = poly[..., :-1]
    poly = b[..., j, None] * poly + a[..., j, None] * shifted
  weights = _shapley_weights(depth)[players]           # [..., D]
  phi = np.zeros(a.shape)
  for i in range(depth):
    ai, bi = a[..., i], b[..., i]
    divide_top = ai != 0
    # poly / (bi + ai t): by bi where ai = 0; else from the top, q[s-1] = (p[s] - bi q[s]) / ai,
    # which with ai in {0, 1} and bi in [0, 1] subtracts no more than it started from.
    safe_a = np.where(divide_top, ai, 1.0)
    top = np.zeros(a.shape[:-1] + (depth,))
    q = np.zeros(a.shape[:-1])
    for s in range(depth, 0, -1):
      q = (poly[..., s] - bi * q) / safe_a
      top[..., s - 1] = q
    safe_b = np.where(bi != 0, bi, 1.0)
    quotient = np.where(divide_top[..., None], top, poly[..., :depth] / safe_b[..., None])
    phi[..., i] = np.where(active[..., i], (ai - bi) * (quotient * weights).sum(axis=-1), 0.0)
  return phi


def _chunks(num_leaves: int, rows: int, depth: int):
  size = max(1, _CHUNK_CELLS // max(1, rows * depth))
  for start in range(0, num_leaves, size):
    yield slice(start, min(num_leaves, start + size))


def _patterns(satisfied: np.ndarray) -> np.ndarray:
  """[..., L] int64 bitmask of the satisfied slots of each (row, leaf)."""
  depth = satisfied.shape[-1]
  return (satisfied.astype(np.int64) << np.arange(depth, dtype=np.int64)).sum(axis=-1)


def _pattern_keys(paths: 'LeafPaths', rows: np.ndarray, leaves: slice) -> np.ndarray:
  """[N, L] (leaf within the chunk) << D | the bitmask of its slots each row satisfies."""
  depth = paths.feature.shape[1]
  count = len(paths.feature[leaves])
  return np.arange(count, dtype=np.int64)[None] << depth | _patterns(paths.satisfied(rows, leaves))


def _bits(patterns: np.ndarray, depth: int) -> np.ndarray:
  return ((patterns[..., None] >> np.arange(depth, dtype=np.int64)) & 1).astype(np.float64)


def path_dependent_shap(forest: Forest, x: np.ndarray, targets: np.ndarray) -> tuple:
  """(phi [N, F], expected [N]) path-dependent Tree SHAP of raw[:, targets]; x encoded.

  expected is the cover-weighted mean of the raw output (bias included), so
  phi sums to raw(x) - expected. A leaf's game depends on the example only
  through which of its slots the example satisfies, so each (leaf, pattern)
  that occurs in the batch is solved once and shared by the rows showing it.
  """
  if not all(tree.has_covers for tree in forest.trees):
    raise ForestError('A split node of the forest has no training cover, which '
                      "path-dependent Tree SHAP weighs branches by; use algorithm="
                      "'interventional' (it needs a background, not covers).")
  paths = forest.paths
  n, f = x.shape
  depth = paths.feature.shape[1]
  phi = np.zeros((n, f))
  for leaves in _chunks(paths.num_leaves, n, depth):
    feature = paths.feature[leaves]
    count = feature.shape[0]
    unique, inverse = np.unique(_pattern_keys(paths, x, leaves).reshape(-1),
                                return_inverse=True)
    leaf, shown = unique >> depth, unique & ((1 << depth) - 1)
    solved = product_game_shapley(_bits(shown, depth), paths.fraction[leaves][leaf],
                                  feature[leaf] >= 0)              # [U, D]
    contributions = solved[inverse].reshape(n, count, depth)
    value = paths.value[leaves][:, targets].T                     # [N, L]
    _scatter(phi, feature, contributions * value[..., None])
  expected = forest.bias[targets] + (paths.reach[:, None] * paths.value).sum(axis=0)[targets]
  return phi, expected


# Set bits of every 16-bit value: slot counts by table lookup.
_POPCOUNT_16 = np.unpackbits(np.arange(1 << 16, dtype='>u2').view(np.uint8)).reshape(
    -1, 16).sum(axis=1).astype(np.int64)


@functools.lru_cache(maxsize=None)
def _count_weights(depth: int):
  """w_x[A, B] = (A-1)! B! / (A+B)! and w_r[A, B] = A! (B-1)! / (A+B)! (0 where undefined)."""
  w_x = np.zeros((depth + 1, depth + 1))
  w_r = np.zeros((depth + 1, depth + 1))
  for a in range(depth + 1):
    for b in range(depth + 1 - a):
      total = math.factorial(a + b)
      if a:
        w_x[a, b] = math.factorial(a - 1) * math.factorial(b) / total
      if b:
        w_r[a, b] = math.factorial(a) * math.factorial(b - 1) / total
  return w_x, w_r


def interventional_shap(forest: Forest, x: np.ndarray, background: np.ndarray,
                        targets: np.ndarray) -> tuple:
  """(phi [N, F], expected [N]) interventional Tree SHAP of raw[:, targets] against the
  background rows (encoded); phi sums to raw(x) - mean over the background of raw.

  With a and b binary, a leaf's product game is 1 exactly when the coalition holds
  every slot only x satisfies ("x-slots", A of them) and none only the background
  row satisfies ("r-slots", B of them); a slot both or neither satisfy leaves the
  game constant or zero. So an x-slot gets (A-1)! B! / (A+B)! and an r-slot
  -A! (B-1)! / (A+B)!, times the leaf's value, averaged over background rows.
  Slots are bits of one integer per (row, leaf); each leaf solves every pair of an
  example pattern and a background pattern it sees once.
  """
  paths = forest.paths
  n, f = x.shape
  r = len(background)
  phi = np.zeros((n, f))
  depth = paths.feature.shape[1]
  w_x, w_r = _count_weights(depth)

  def count_bits(values):
    if depth <= 16:
      return _POPCOUNT_16[values]
    return sum(_POPCOUNT_16[(values >> s) & 0xFFFF] for s in range(0, depth, 16))

  for leaves in _chunks(paths.num_leaves, n + r, depth):
    feature = paths.feature[leaves]
    count = feature.shape[0]
    full = _patterns(feature >= 0)                                 # [L]
    # A leaf sees a row only through its pattern: solve each (x pattern, background
    # pattern) pair of a leaf once, background patterns weighted by how many rows show them.
    x_keys, x_inverse = np.unique(_pattern_keys(paths, x, leaves).reshape(-1),
                                  return_inverse=True)
    r_keys, r_counts = np.unique(_pattern_keys(paths, background, leaves).reshape(-1),
                                 return_counts=True)
    x_leaf, r_leaf = x_keys >> depth, r_keys >> depth
    start = np.searchsorted(r_leaf, x_leaf, side='left')
    lengths = np.searchsorted(r_leaf, x_leaf, side='right') - start
    solved = np.zeros((len(x_keys), depth))
    # Pairs in groups of x patterns holding at most _CHUNK_CELLS pairs (memory bound).
    ends = np.cumsum(lengths)
    group_of = ends // _CHUNK_CELLS
    for group in np.unique(group_of):
      members = np.nonzero(group_of == group)[0]
      solved[members] = _solve_pairs(x_keys[members], start[members], lengths[members],
                                     r_keys, r_counts / r, full, depth, w_x, w_r, count_bits)
    per_slot = solved[x_inverse].reshape(n, count, depth)
    value = paths.value[leaves][:, targets].T
    _scatter(phi, feature, per_slot * value[..., None])
  expected = forest.raw_from_encoded(background)[:, targets].mean(axis=0) if r else \
      np.full(n, np.nan)
  return phi, expected


def _solve_pairs(x_keys, start, lengths, r_keys, r_share, full, depth, w_x, w_r,
                 count_bits) -> np.ndarray:
  """[len(x_keys), D] each (leaf, x pattern)'s slot values, summed over the background
  patterns of its leaf (r_keys[start:start + length]) weighted by their shares."""
  pair_x = np.repeat(np.arange(len(x_keys)), lengths)
  offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  pair_r = np.repeat(start, lengths) + offsets
  mask = (1 << depth) - 1
  px, pr = x_keys[pair_x] & mask, r_keys[pair_r] & mask
  leaf_full = full[x_keys[pair_x] >> depth]
  only_x = px & ~pr & leaf_full
  only_r = pr & ~px & leaf_full
  live = ((px | pr) & leaf_full) == leaf_full   # no slot fails both
  a_count, b_count = count_bits(only_x), count_bits(only_r)
  weight_x = np.where(live, w_x[a_count, b_count], 0.0) * r_share[pair_r]
  weight_r = np.where(live, w_r[a_count, b_count], 0.0) * r_share[pair_r]
  solved = np.zeros((len(x_keys), depth))
  for d in range(depth):
    per_pair = ((only_x >> d) & 1) * weight_x - ((only_r >> d) & 1) * weight_r
    solved[:, d] = np.bincount(pair_x, per_pair, minlength=len(x_keys))
  return solved


def _scatter(phi: np.ndarray, feature: np.ndarray, contributions: np.ndarray) -> None:
  """phi[n, feature[l, d]] += contributions[n, l, d] over leaves and slots (padding skipped)."""
  flat_feature = feature.reshape(-1)
  keep = np.nonzero(flat_feature >= 0)[0]
  flat = contributions.reshape(len(phi), -1)[:, keep]
  # Sum the slots of each feature: sort slots by feature, add runs.
  order = np.argsort(flat_feature[keep], kind='stable')
  sorted_features = flat_feature[keep][order]
  if not len(sorted_features):
    return
  starts = np.concatenate([[0], np.nonzero(np.diff(sorted_features))[0] + 1])
  phi[:, sorted_features[starts]] += np.add.reduceat(flat[:, order], starts, axis=1)


def brute_force_path_dependent(forest: Forest, x: np.ndarray, target: int) -> np.ndarray:
  """[F] for one encoded row: Shapley values over all 2^F coalitions of the cover-weighted
  conditional expectation, computed by walking the trees (Lundberg's EXPVALUE). For tests:
  independent of the product-game decomposition; feasible for F <= ~10."""
  f = x.shape[0]

  def expectation(tree: Tree, node: int, coalition: int) -> float:
    feature = tree.feature[node]
    if feature < 0:
      return tree.value[node, target]
    if coalition >> feature & 1:
      go = Forest._goes_positive(tree, np.asarray([node]), np.asarray([x[feature]]))[0]
      return expectation(tree, tree.positive[node] if go else tree.negative[node], coalition)
    pos, neg = tree.positive[node], tree.negative[node]
    return (tree.cover[pos] * expectation(tree, pos, coalition) +
            tree.cover[neg] * expectation(tree, neg, coalition)) / tree.cover[node]

  values = np.asarray([forest.bias[target] + sum(expectation(t, 0, s) for t in forest.trees)
                       for s in range(1 << f)])
  return exact_shapley_from_values(values, f)


def exact_shapley_from_values(values: np.ndarray, f: int) -> np.ndarray:
  """[F] Shapley values of a game given as v[coalition bitmask] over all 2^F coalitions."""
  phi = np.zeros(f)
  for i in range(f):
    for s in range(1 << f):
      if s >> i & 1:
        continue
      size = bin(s).count('1')
      weight = math.factorial(size) * math.factorial(f - size - 1) / math.factorial(f)
      phi[i] += weight * (values[s | 1 << i] - values[s])
  return phi


def forest_from_sklearn(model, names) -> Forest:
  """A fitted scikit-learn forest (RandomForest/ExtraTrees regressor or classifier) as a
  Forest: raw output = its predict (regressor) or predict_proba (classifier).

  sklearn sends x <= t left: its right child is our positive one at the next
  float above t (x > t  <=>  x >= nextafter(t)); trees are averaged.
  """
  estimators = model.estimators_
  converted = []
  for estimator in estimators:
    t = estimator.tree_
    leaf = t.children_left < 0
    value = t.value[:, 0, :]
    if hasattr(model, 'classes_'):
      value = value / value.sum(axis=1, keepdims=True)
    converted.append(Tree(
        feature=np.where(leaf, -1, t.feature),
        threshold=np.where(leaf, 0.0, np.nextafter(t.threshold, np.inf)),
        positive=t.children_right, negative=t.children_left,
        value=value / len(estimators), cover=t.weighted_n_node_samples))
  return Forest(converted, list(names), ['numerical'] * len(names),
                np.zeros(converted[0].value.shape[1]),
                description=f'{type(model).__name__}, {len(estimators)} trees')
