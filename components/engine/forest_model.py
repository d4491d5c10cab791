"""TensorFlow Decision Forests models: the served function, and the trees it runs.

A TF-DF model (TFX's `penguin_utils_tfdf_experimental.py` trains one) is a
Keras model whose call is a custom inference op over a Yggdrasil model kept
in the SavedModel's assets. Its output cannot be differentiated, but its
trees can be read: TF-DF's model inspector gives every node's condition,
value and training cover. `ForestModelFunction` is the served model (what
Kernel SHAP, LIME and the served-function check evaluate) together with that
`trees.Forest`, so Tree SHAP explains exactly the trees that serve; every
batch it explains is checked against the served output.

The forest reads the model's own inputs (`*_xf` behind a Transform). When
the Transform maps each raw feature to its own forest input (scaling,
bucketising, a vocabulary: one raw feature in, one out), attributions of the
forest inputs are those of the raw features: the coalition games are the same.
The mapping is measured on the reference rows when the model is first
explained; a Transform that mixes raw features is refused with what to do.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from tfx_explain.engine import trees
from tfx_explain.engine.model import (OUTPUT_LOGIT, OUTPUT_PROBABILITY, OUTPUT_REGRESSION,
                                      ModelAccessError, ModelFunction)

HEADER_SUFFIX = 'header.pb'
DATA_SPEC_SUFFIX = 'data_spec.pb'
INSTALL_HINT = ("Install TensorFlow Decision Forests beside this TensorFlow: "
                "pip install 'tfx-explain[forests]' (tensorflow-decision-forests 1.9.2 for "
                'TensorFlow 2.16).')
RANDOM_FOREST = 'RANDOM_FOREST'
GRADIENT_BOOSTED_TREES = 'GRADIENT_BOOSTED_TREES'
# Served and tree-computed outputs must agree to this (float32 inference).
SERVED_TOLERANCE = 1e-4
# Boosted-trees losses whose link to the served output is the softmax / sigmoid / identity.
GBT_LOSSES = ('MULTINOMIAL_LOG_LIKELIHOOD', 'BINOMIAL_LOG_LIKELIHOOD', 'SQUARED_ERROR')


def forest_assets(path: str) -> Optional[str]:
  """The assets folder of a SavedModel that holds a Yggdrasil forest, or None."""
  assets = os.path.join(path, 'assets')
  if not tf.io.gfile.isdir(assets):
    return None
  names = tf.io.gfile.listdir(assets)
  if any(n.endswith(HEADER_SUFFIX) for n in names) and \
      any(n.endswith(DATA_SPEC_SUFFIX) for n in names):
    return assets
  return None


def import_tfdf():
  """TF-DF, whose import registers the inference ops the SavedModel calls."""
  try:
    import tensorflow_decision_forests as tfdf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ModelAccessError(f'The model is a TensorFlow Decision Forests model, but '
                           f'tensorflow_decision_forests cannot be imported ({e}). '
                           f'{INSTALL_HINT}') from e
  return tfdf


def read_forest(assets: str) -> trees.Forest:
  """The forest in a TF-DF model's assets, through TF-DF's model inspector."""
  tfdf = import_tfdf()
  inspector = tfdf.inspector.make_inspector(assets)
  model_type = inspector.model_type()
  if model_type not in (RANDOM_FOREST, GRADIENT_BOOSTED_TREES):
    raise ModelAccessError(f'The forest in {assets} is a {model_type} model; Tree SHAP reads '
                           f'{RANDOM_FOREST} and {GRADIENT_BOOSTED_TREES} models. Explain it '
                           'with KernelShap instead.')
  dataspec = inspector.dataspec
  columns = sorted({f.col_idx for f in inspector.features()})
  names = [dataspec.columns[c].name for c in columns]
  position = {c: i for i, c in enumerate(columns)}
  kinds, dictionaries = [], {}
  column_type = tfdf.py_tree.dataspec.ColumnType
  for c, name in zip(columns, names):
    column = dataspec.columns[c]
    if column.type == column_type.CATEGORICAL:
      if column.categorical.is_already_integerized:
        # TF-DF shifts integer categories by an offset it may or may not apply: refuse
        # rather than guess which code a value gets.
        raise ModelAccessError(
            f'Forest input {name!r} in {assets} is an integerized categorical column; Tree '
            'SHAP reads numerical inputs and categories with a dictionary (strings, or '
            'integers the learner indexed itself). Explain this model with KernelShap.')
      kinds.append('categorical')
      # Keys are the values as strings (an integer category 3 is the key '3').
      dictionaries[name] = {key: item.index for key, item in column.categorical.items.items()}
    elif column.type == column_type.NUMERICAL:
      kinds.append('numerical')
    else:
      raise ModelAccessError(
          f'Forest input {name!r} in {assets} is a {column_type.Name(column.type)} column; Tree '
          'SHAP reads numerical (not discretized) and dictionary categorical inputs. Explain '
          'this model with KernelShap instead.')
  task = inspector.task
  if task not in (tfdf.keras.Task.CLASSIFICATION, tfdf.keras.Task.REGRESSION):
    raise ModelAccessError(f'The forest in {assets} solves a {tfdf.keras.Task.Name(task)} task; '
                           'Tree SHAP explains classifiers and regressors. Explain it with '
                           'KernelShap.')
  classification = task == tfdf.keras.Task.CLASSIFICATION
  label_classes = None
  if classification:
    label_column = dataspec.columns[inspector.header.label_col_idx]
    label_classes = label_column.categorical.number_of_unique_values - 1   # without OOD
  all_trees = inspector.extract_all_trees()
  if model_type == RANDOM_FOREST:
    winner_take_all = classification and inspector.winner_take_all_inference()
    width = label_classes if classification else 1
    scale = 1.0 / len(all_trees)
    converted = [_tree(t.root, position, dictionaries, kinds,
                       lambda v: _rf_value(v, width, winner_take_all) * scale)
                 for t in all_trees]
    return trees.Forest(converted, names, kinds, np.zeros(width), trees.LINK_IDENTITY,
                        dictionaries, description=f'random forest, {len(all_trees)} trees' +
                        (', winner-take-all votes' if winner_take_all else ''),
                        classification=classification)
  loss_name = _loss_name(inspector)
  if loss_name not in GBT_LOSSES:
    raise ModelAccessError(f'The boosted trees in {assets} were trained with the {loss_name} '
                           f'loss; Tree SHAP reads models trained with {sorted(GBT_LOSSES)} '
                           '(their link is known). Explain this model with KernelShap.')
  per_iteration = inspector.num_trees_per_iter
  bias = np.asarray(inspector.specialized_header().initial_predictions, np.float64)
  width = len(bias)
  converted = []
  for index, tree in enumerate(all_trees):
    output = index % per_iteration

    def value(v, output=output):
      out = np.zeros(width)
      out[output] = v.value
      return out
    converted.append(_tree(tree.root, position, dictionaries, kinds, value))
  if classification:
    link = trees.LINK_SOFTMAX if width > 1 else trees.LINK_SIGMOID
  else:
    link = trees.LINK_IDENTITY
  return trees.Forest(converted, names, kinds, bias, link, dictionaries,
                      description=f'gradient boosted trees, {len(all_trees)} trees',
                      classification=classification)


def _loss_name(inspector) -> str:
  # pylint: disable-next=g-import-not-at-top
  from yggdrasil_decision_forests.model.gradient_boosted_trees import gradient_boosted_trees_pb2 as gbt
  return gbt.Loss.Name(inspector.loss)


def _rf_value(value, width: int, winner_take_all: bool) -> np.ndarray:
  if width == 1 and not hasattr(value, 'probability'):
    return np.asarray([value.value], np.float64)
  probability = np.asarray(value.probability, np.float64)
  if winner_take_all:
    vote = np.zeros(width)
    vote[int(np.argmax(probability))] = 1.0
    return vote
  return probability


def _tree(root, position: Mapping[int, int], dictionaries, kinds, leaf_value) -> trees.Tree:
  """A TF-DF py_tree as node arrays; covers from the nodes' training counts."""
  feature, threshold, positive, negative, values, cover, categories = [], [], [], [], [], [], []
  stack = [(root, None, None)]   # node, parent index, is positive child

  def add(node):
    index = len(feature)
    feature.append(-1)
    threshold.append(0.0)
    positive.append(-1)
    negative.append(-1)
    values.append(None)
    cover.append(float(getattr(node.value, 'num_examples', 0.0) or 0.0)
                 if getattr(node, 'value', None) is not None else 0.0)
    categories.append(None)
    return index

  while stack:
    node, parent, is_positive = stack.pop()
    index = add(node)
    if parent is not None:
      (positive if is_positive else negative)[parent] = index
    if hasattr(node, 'condition'):
      condition = node.condition
      kind = type(condition).__name__
      columns = [f.col_idx for f in condition.features()]
      if len(columns) != 1:
        raise ModelAccessError(f'A split tests {len(columns)} features at once ({kind}); '
                               'Tree SHAP reads axis-aligned splits. Explain this model with '
                               'KernelShap instead.')
      f = position[columns[0]]
      feature[index] = f
      if kind == 'NumericalHigherThanCondition':
        threshold[index] = float(condition.threshold)
      elif kind == 'CategoricalIsInCondition':
        # Integerized columns are refused above: every categorical one has a dictionary.
        dictionary = dictionaries[condition.features()[0].name]
        categories[index] = frozenset(dictionary.get(item, 0) for item in condition.mask)
      else:
        raise ModelAccessError(f'Split condition {kind} is not read by Tree SHAP; explain this '
                               'model with KernelShap instead.')
      stack.append((node.neg_child, index, False))
      stack.append((node.pos_child, index, True))
    else:
      values[index] = leaf_value(node.value)
  width = len(next(v for v in values if v is not None))
  value_array = np.zeros((len(feature), width))
  for i, v in enumerate(values):
    if v is not None:
      value_array[i] = v
  cover = np.asarray(cover)
  # Nodes without a recorded count (gradient boosted trees keep counts at the
  # leaves only, in some releases) take the sum of their children's.
  for index in reversed(range(len(feature))):   # children are added after their parent
    if feature[index] >= 0 and cover[index] <= 0:
      cover[index] = cover[positive[index]] + cover[negative[index]]
  return trees.Tree(feature, threshold, positive, negative, value_array, cover, categories)


def _fit_width(forest: trees.Forest, served_width: int, path: str) -> trees.Forest:
  """The forest with as many outputs as the model serves.

  A binary classifier serves one probability (the positive class) where a
  random forest's leaves hold both, or two where boosted trees hold one margin.
  """
  width = forest.num_outputs
  if width == served_width:
    return forest
  if width == 2 and served_width == 1 and forest.link == trees.LINK_IDENTITY:
    for tree in forest.trees:
      tree.value = tree.value[:, 1:2]
    forest.bias = forest.bias[1:2]
  elif width == 1 and served_width == 2 and forest.link == trees.LINK_SIGMOID:
    # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)].
    for tree in forest.trees:
      tree.value = np.concatenate([np.zeros_like(tree.value), tree.value], axis=1)
    forest.bias = np.concatenate([[0.0], forest.bias])
    forest.link = trees.LINK_SOFTMAX
  else:
    raise ModelAccessError(f'The forest in {path} has {width} output(s) but the model serves '
                           f'{served_width}; explain it with KernelShap.')
  forest._paths = None   # pylint: disable=protected-access
  return forest


class ForestModelFunction(ModelFunction):
  """A served TF-DF model (raw features in, served output out) and its forest."""

  autograph = False
  differentiable = False   # gradient methods refuse it (base.AttributionMethod.attribute)

  def __init__(self, served: ModelFunction, forest: trees.Forest, path: str):
    self.served = served
    self.forest = _fit_width(forest, served.num_outputs, path)
    self.path = path
    self._mapping: Optional[Dict[str, str]] = None
    sizes = {n: served.vector_inputs.get(n, 1) for n in served.model_inputs}
    # The custom inference op says nothing about its output; the forest's task does.
    kind = OUTPUT_PROBABILITY if forest.classification else OUTPUT_REGRESSION
    super().__init__(served.model_inputs, served._model_dtypes, served._input_ranks,  # pylint: disable=protected-access
                     kind, served.num_outputs, served.max_rows, sizes)

  @property
  def description(self) -> str:
    return f'a decision forest ({self.forest.description}) served by a custom inference op'

  @property
  def raw_output_kind(self) -> str:
    """What Tree SHAP explains: the margin of a boosted classifier, else the served output."""
    return OUTPUT_LOGIT if self.forest.link != trees.LINK_IDENTITY else self.output_kind

  def _call(self, inputs):
    return self.served._call(inputs)   # pylint: disable=protected-access

  def _differentiable_inputs(self) -> set:
    return set()   # a custom inference op: no gradient reaches any input

  @property
  def transform(self):
    return getattr(self.served, 'transform', None)

  def forest_inputs(self, features: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The forest's inputs for these (raw) features: through the Transform, if any."""
    features = self.element_features(features)
    if self.transform is None:
      return {n: np.asarray(features[n]) for n in self.forest.feature_names}
    columns = {n: tf.constant(_column(features[n], self.input_dtypes[n]))
               for n in self.input_names}
    # Shaped as the served model feeds its Transform ([batch, 1] for scalar features).
    transformed = self.transform(self._model_inputs_from(columns))
    missing = [n for n in self.forest.feature_names if n not in transformed]
    if missing:
      raise ModelAccessError(f'The forest in {self.path} reads {missing}, which the Transform '
                             f'({self.transform.source}) does not produce.')
    return {n: _to_numpy(transformed[n]) for n in self.forest.feature_names}

  def feature_of_forest_input(self, reference_rows: Mapping[str, np.ndarray]) -> Dict[str, str]:
    """forest input -> the raw feature it is computed from, measured on reference rows.

    Each raw feature in turn is replaced by the same column rotated by one row;
    the forest inputs that change depend on it. Each forest input must depend on
    exactly one raw feature, and each raw feature feed at most one forest input.
    """
    if self._mapping is not None:
      return self._mapping
    if self.transform is None:
      unknown = [n for n in self.forest.feature_names if n not in self.input_names]
      if unknown:
        raise ModelAccessError(f'The forest in {self.path} reads {unknown}, which are not '
                               f'inputs of the served model ({self.input_names}).')
      self._mapping = {n: n for n in self.forest.feature_names}
      return self._mapping
    rows = {n: np.asarray(reference_rows[n]) for n in self.input_names}
    if len(next(iter(rows.values()))) < 2:
      raise ModelAccessError('Tree SHAP behind a Transform needs at least 2 reference rows to '
                             'tell which raw feature each forest input comes from.')
    base = self.forest_inputs(rows)
    depends: Dict[str, List[str]] = {n: [] for n in self.forest.feature_names}
    for raw in self.input_names:
      moved = dict(rows)
      moved[raw] = np.roll(rows[raw], 1, axis=0)
      changed = self.forest_inputs(moved)
      for name in self.forest.feature_names:
        if not _same(base[name], changed[name]):
          depends[name].append(raw)
    mixed = {n: d for n, d in depends.items() if len(d) > 1}
    constant = [n for n, d in depends.items() if not d]
    if mixed:
      raise ModelAccessError(
          f'The Transform of {self.path} computes forest input(s) from several raw features '
          f'({mixed}), so Tree SHAP values of the forest inputs are not those of raw features. '
          "Set attribution_space='transformed' to explain the forest inputs, or use KernelShap "
          'on the raw features.')
    mapping = {n: d[0] for n, d in depends.items() if d}
    for name in constant:
      # Unchanged on these rows: the forest input is constant there, or the reference
      # rows share one value of its raw feature. Name-match as TFX's `<name>_xf`.
      raw = name[:-3] if name.endswith('_xf') else name
      if raw not in self.input_names:
        raise ModelAccessError(
            f'Forest input {name!r} of {self.path} does not change with any raw feature on the '
            'reference rows, so its raw feature is unknown. Explain with '
            "attribution_space='transformed' or KernelShap.")
      mapping[name] = raw
    fed = {}
    for name, raw in mapping.items():
      fed.setdefault(raw, []).append(name)
    shared = {raw: names for raw, names in fed.items() if len(names) > 1}
    if shared:
      raise ModelAccessError(
          f'Raw feature(s) feed several forest inputs through the Transform of {self.path} '
          f'({shared}); Tree SHAP attributes each forest input. Set '
          "attribution_space='transformed', or use KernelShap on the raw features.")
    self._mapping = mapping
    return mapping


def _column(values, dtype: tf.DType) -> np.ndarray:
  values = np.asarray(values)
  if dtype == tf.string:
    return values.astype(object)
  return values.astype(dtype.as_numpy_dtype)


def _to_numpy(tensor) -> np.ndarray:
  if isinstance(tensor, tf.SparseTensor):
    tensor = tf.sparse.to_dense(tensor)
  values = tensor.numpy()
  if values.ndim == 2 and values.shape[1] == 1:
    values = values[:, 0]
  return values


def _same(a: np.ndarray, b: np.ndarray) -> bool:
  if a.dtype.kind in 'fc':
    return np.array_equal(a, b, equal_nan=True)
  return np.array_equal(a, b)
