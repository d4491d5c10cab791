"""Token attributions for text models: one score per word of a string feature.

A text model takes a string feature, splits it into words and looks each up in
a vocabulary and an embedding (TFX's imdb example: `tf.strings.split`,
`tft.compute_and_apply_vocabulary`, `Embedding`, an LSTM). Its words are the
players:

    TokenShap                    model-agnostic: Kernel SHAP over the words, a word
                                 left out by deleting it from the text, so the empty
                                 coalition is the empty text. Runs the served function
                                 (Transform and model) on the edited strings.
    TokenIntegratedGradients     Integrated Gradients at the embedding: from the
                                 embeddings of the empty text to the example's.
    TokenExpectedGradients       the same averaged over baselines that are the
                                 embeddings of background texts.

Words are the pieces of the text between runs of ASCII whitespace, exactly as
`tf.strings.split` makes them. TokenShap and TokenIntegratedGradients compare
with the empty text (IG with its embeddings, position by position), so their
scores sum to f(text) - f('') and can be compared with each other;
TokenExpectedGradients compares with background texts. The gradient methods
cut the model's saved call at its embedding lookup (`EmbeddingCut`); position
p must hold the p-th word's own id, which is checked for every example.

Results are `TokenAttribution`s: the text feature's column holds the sum of
its word scores, so every check on per-feature values applies, and `tokens` /
`token_scores` hold the words and their scores per example.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfx_explain.configurable import ConfigError
from tfx_explain.engine import base
from tfx_explain.engine.gradients import expected_gradients_draws, integration_nodes
from tfx_explain.engine.model import ModelAccessError, ModelFunction, to_model_column
from tfx_explain.engine.shapley import kernel_coalitions, solve_kernel_regression
from tfx_explain.validators import check_choice, check_int

# Floats per compiled call of the cut model ([rows, length, dimension] embeddings):
# 16 MB of points, and as much again for their gradients.
MAX_EMBEDDING_FLOATS = 1 << 22
_GATHER_OPS = ('GatherV2', 'ResourceGather', 'Gather')
_PASS_THROUGH = ('Identity', 'ReadVariableOp')
_SHAPE_OPS = ('Shape', 'ShapeN', 'Size', 'Rank')


# What tf.strings.split(sep=None) splits on: runs of ASCII whitespace only (not U+00A0,
# U+2003 or the other Unicode spaces Python's str.split also takes).
_ASCII_WHITESPACE = re.compile(rb'[ \t\n\v\f\r]+')


def word_pieces(text) -> List[bytes]:
  """The words of a text, as bytes, exactly as the Transform's `tf.strings.split` makes them."""
  if not isinstance(text, bytes):
    text = str(text).encode('utf-8')
  return [w for w in _ASCII_WHITESPACE.split(text) if w]


def tokens_of(text) -> List[str]:
  """The words of a text (`word_pieces`) for display: UTF-8, invalid bytes replaced."""
  return [w.decode('utf-8', errors='replace') for w in word_pieces(text)]


def join_tokens(pieces: Sequence[bytes]) -> bytes:
  """A text of these words (`word_pieces`): split again, it gives the same words."""
  return b' '.join(pieces)


@dataclasses.dataclass(kw_only=True)
class TokenAttribution(base.AttributionResult):
  """An AttributionResult with one score per word of the text feature.

  `attributions[:, text column]` is the sum of the example's scores (for
  TokenExpectedGradients, of every embedding position: see there).
  """
  text_feature: str
  tokens: List[List[str]]
  token_scores: List[np.ndarray]


def text_feature_of(owner: str, model: ModelFunction, text_feature: Optional[str]) -> str:
  """The model's string input a token method explains: the one given, or its only one."""
  strings = [n for n in model.input_names if model.input_dtypes[n] == tf.string]
  if text_feature is not None:
    if text_feature not in model.input_names:
      raise ConfigError(f'{owner}: text_feature {text_feature!r} is not an input of the model '
                        f'(inputs: {model.input_names}).')
    if text_feature not in strings:
      raise ConfigError(f'{owner}: text_feature {text_feature!r} is not a string input of the '
                        f'model; token methods explain texts.')
    return text_feature
  if len(strings) != 1:
    raise ConfigError(
        f'{owner}: the model has {len(strings)} string inputs {strings}; set text_feature to '
        'the text to explain.' if strings else
        f'{owner}: the model has no string input (inputs: {model.input_names}); token methods '
        'explain a text feature.')
  return strings[0]


# -- the model cut at its embedding ------------------------------------------

def _producer(nodes, reference: str):
  node = nodes.get(reference.split(':')[0].lstrip('^'))
  while node is not None and node.op in _PASS_THROUGH and node.input:
    node = nodes.get(node.input[0].split(':')[0])
  return node


def _ancestors(nodes, name: str) -> set:
  seen, stack = set(), [name]
  while stack:
    node = nodes.get(stack.pop().split(':')[0].lstrip('^'))
    if node is None or node.name in seen:
      continue
    seen.add(node.name)
    stack.extend(node.input)
  return seen


@dataclasses.dataclass
class _Lookup:
  node: str            # the gather node, whose output the cut replaces
  ids_input: str       # the model input its ids come from
  table: np.ndarray    # [V, D] the embedding matrix


class EmbeddingCut:
  """A restored model's saved call as a function of its embedded token sequence.

  The call is frozen (variables as constants, nested functions inlined,
  control flow kept functional so LSTMs and other loops still differentiate)
  and re-imported with the embedding lookup's output replaced by the points
  the gradient methods choose. The methods check, batch by batch, that the cut
  at the example's own embeddings gives the explained output, and refuse a
  model that reads its ids other than through the lookup (a mask).
  """

  def __init__(self, model: ModelFunction, embedding: Optional[str] = None):
    call = getattr(model, 'model_call', None)
    if call is None or not hasattr(model, 'model_inputs_of'):
      raise ModelAccessError(
          f'Token gradients need the model\'s saved call to cut at its embedding, and the '
          f'model ({type(model).__name__}) has none; use TokenShap, which needs only the '
          'served function.')
    # pylint: disable-next=g-import-not-at-top
    from tensorflow.python.framework import convert_to_constants as freezing
    frozen, graph_def = freezing.convert_variables_to_constants_v2_as_graph(
        call, lower_control_flow=False, aggressive_inlining=True)
    self.model = model
    specs = model.model_input_specs()
    flat_names = sorted(specs) if isinstance(call.structured_input_signature[0][0], dict) \
        else list(specs)
    self._placeholders = {name: tensor.name for name, tensor in
                          zip(flat_names, frozen.inputs[:len(flat_names)])}
    self._output = frozen.outputs[getattr(model, 'output_index', 0)].name
    self._graph_def = graph_def
    lookup = self._find_lookup(graph_def, embedding)
    self._check_ids_only_looked_up(graph_def, lookup)
    self.lookup_node = lookup.node
    self.ids_input = lookup.ids_input
    self.table = lookup.table
    ids_spec = specs[self.ids_input]
    if ids_spec.shape.rank != 2 or ids_spec.shape[1] is None:
      raise ModelAccessError(
          f'The embedding {lookup.node!r} looks up ids from model input {self.ids_input!r} of '
          f'shape {ids_spec.shape}; token gradients need one fixed-length sequence of ids per '
          'example ([batch, length]). Use TokenShap.')
    self.length = int(ids_spec.shape[1])
    self.dimension = int(self.table.shape[1])
    self._specs = [specs[n] for n in flat_names]
    self._names = flat_names
    self._compile()

  def _find_lookup(self, graph_def, embedding: Optional[str]) -> _Lookup:
    nodes = {n.name: n for n in graph_def.node}
    placeholders = {tensor.split(':')[0]: name for name, tensor in self._placeholders.items()}
    found = []
    for node in graph_def.node:
      if node.op not in _GATHER_OPS or len(node.input) < 2:
        continue
      params = _producer(nodes, node.input[0])
      if params is None or params.op != 'Const':
        continue
      table = tf.make_ndarray(params.attr['value'].tensor)
      if table.ndim != 2 or table.dtype.kind != 'f':
        continue
      sources = [placeholders[a] for a in _ancestors(nodes, node.input[1]) if a in placeholders]
      if len(sources) == 1:
        found.append(_Lookup(node.name, sources[0], table))
    if embedding is not None:
      named = [f for f in found if f'/{embedding}/' in f'/{f.node}/']
      if len(named) != 1:
        raise ModelAccessError(
            f'embedding {embedding!r} names {len(named)} of the model\'s embedding lookups '
            f'{[f.node for f in found]}; give the name of the Embedding layer to cut at.')
      return named[0]
    if len(found) != 1:
      raise ModelAccessError(
          f'The model has {len(found)} embedding lookups ({[f.node for f in found]}), so '
          'token gradients do not know where to cut it' +
          ('; set embedding to the Embedding layer\'s name.' if found else
           ': it looks up no matrix of embeddings by token id. Use TokenShap.'))
    return found[0]

  def _check_ids_only_looked_up(self, graph_def, lookup: _Lookup) -> None:
    """Refuses a model that reads its token ids other than through the lookup.

    Embedding(mask_zero=True) makes a mask from the ids: the points the gradient
    methods choose would keep the example's mask, so the path would not start at
    the empty text. Reading the ids' shape is harmless.
    """
    nodes = {n.name: n for n in graph_def.node}
    placeholder = self._placeholders[lookup.ids_input].split(':')[0]
    consumers: Dict[str, List[str]] = {}
    for node in graph_def.node:
      for name in node.input:
        if not name.startswith('^'):
          consumers.setdefault(name.split(':')[0], []).append(node.name)
    reached, stack = set(), [placeholder]
    while stack:   # everything computed from the ids
      name = stack.pop()
      if name not in reached:
        reached.add(name)
        stack.extend(consumers.get(name, []))
    # From the ids to the lookup's indices: the path a word's id takes.
    on_path = _ancestors(nodes, nodes[lookup.node].input[1]) & reached
    for node in graph_def.node:
      if node.name in on_path or node.name == lookup.node or node.op in _SHAPE_OPS:
        continue
      fed = [i.split(':')[0] for i in node.input if not i.startswith('^')]
      if any(name in on_path for name in fed):
        raise ModelAccessError(
            f'The model reads its token ids {lookup.ids_input!r} other than through the '
            f'embedding lookup {lookup.node!r} (node {node.name!r}, {node.op}: a mask such as '
            "Embedding(mask_zero=True) makes), so a path in embedding space would keep the "
            "example's mask and not start at the empty text. Use TokenShap.")

  def _compile(self):
    point_spec = tf.TensorSpec([None, self.length, self.dimension], tf.float32)
    graph_def, output, lookup = self._graph_def, self._output, self.lookup_node + ':0'
    placeholders = [self._placeholders[n] for n in self._names]

    def forward(inputs, points):
      input_map = dict(zip(placeholders, inputs))
      input_map[lookup] = points
      [outputs] = tf.graph_util.import_graph_def(graph_def, input_map=input_map,
                                                 return_elements=[output], name='cut')
      outputs = tf.cast(outputs, tf.float32)
      return outputs if outputs.shape.rank == 2 else tf.reshape(outputs, [-1, 1])

    @tf.function(input_signature=[self._specs, point_spec, tf.TensorSpec([None], tf.int32)])
    def gradient_fn(inputs, points, targets):
      selected = tf.gather(forward(inputs, points), targets, axis=1, batch_dims=1)
      # Imported ops are not on a tape: symbolic gradients. Rows are independent,
      # so the gradient of the sum is each row's own.
      [grads] = tf.gradients(tf.reduce_sum(selected), points)
      return selected, grads if grads is not None else tf.zeros_like(points)

    @tf.function(input_signature=[self._specs, point_spec])
    def predict_fn(inputs, points):
      return forward(inputs, points)

    self._gradient_fn = gradient_fn.get_concrete_function()
    self._predict_fn = predict_fn.get_concrete_function()

  @property
  def rows_per_call(self) -> int:
    return max(1, MAX_EMBEDDING_FLOATS // (self.length * self.dimension))

  def model_inputs(self, features: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """The call's inputs for raw features (through the Transform), in its order."""
    model = self.model
    columns = {n: tf.constant(to_model_column(features[n], model.input_dtypes[n]))
               for n in model.input_names}
    inputs = model.model_inputs_of(model.inputs_from_columns(columns))
    return [inputs[n].numpy() for n in self._names]

  def ids(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
    return np.asarray(inputs[self._names.index(self.ids_input)])

  def embed(self, ids: np.ndarray) -> np.ndarray:
    return self.table[np.asarray(ids, np.int64)].astype(np.float32)

  def predict(self, inputs: Sequence[np.ndarray], points: np.ndarray) -> np.ndarray:
    chunks = [self._predict_fn([tf.constant(i[rows]) for i in inputs],
                               tf.constant(points[rows])).numpy()
              for rows in _chunks(len(points), self.rows_per_call)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)

  def gradients(self, inputs: Sequence[np.ndarray], points: np.ndarray, targets: np.ndarray):
    """(outputs at the points for their targets [R], d/d points [R, L, D]), chunked."""
    outs, grads = [], []
    for rows in _chunks(len(points), self.rows_per_call):
      out, grad = self._gradient_fn([tf.constant(i[rows]) for i in inputs],
                                    tf.constant(points[rows]),
                                    tf.constant(np.asarray(targets[rows], np.int32)))
      outs.append(out.numpy())
      grads.append(grad.numpy())
    if not outs:
      return np.zeros(0, np.float32), np.zeros_like(points)
    return np.concatenate(outs), np.concatenate(grads)


def _chunks(n: int, step: int):
  for start in range(0, n, step):
    yield slice(start, min(n, start + step))


def _weights_fingerprint(model: ModelFunction) -> Tuple[float, ...]:
  """A number per model variable that changes when its weights are re-drawn or trained."""
  variables = model.model_variables() if hasattr(model, 'model_variables') else []
  sums = []
  for variable in variables:
    if variable.dtype.is_floating:
      values = tf.cast(variable, tf.float64)
      sums += [float(tf.reduce_sum(values)), float(tf.reduce_sum(values * values))]
  return tuple(sums)


def embedding_cut(model: ModelFunction, embedding: Optional[str] = None) -> EmbeddingCut:
  """The model's EmbeddingCut, made once per model, embedding name and set of weights.

  The cut holds the weights as constants: when they change in place (a sanity
  check re-drawing layers), the next call cuts the model again.
  """
  cuts = model.__dict__.setdefault('_embedding_cuts', {})
  fingerprint = _weights_fingerprint(model)
  cached = cuts.get(embedding)
  if cached is None or cached[0] != fingerprint:
    cuts[embedding] = (fingerprint, EmbeddingCut(model, embedding))
  return cuts[embedding][1]


# -- methods -----------------------------------------------------------------

class _TokenMethod(base.AttributionMethod):
  """Shared: which feature is the text, its words per example, the result."""

  owner = 'TokenMethod'
  token_method = True

  def skipped_features(self, model):
    text = text_feature_of(self.owner, model, self.text_feature)
    return [n for n in model.input_names if n != text]

  def refusal(self, model) -> Optional[str]:
    try:
      text_feature_of(self.owner, model, self.text_feature)
    except ConfigError as error:
      return 'explain a text feature: ' + str(error).split(': ', 1)[1]
    return super().refusal(model)

  def _words(self, model, features):
    """(text feature, each example's words as bytes)."""
    text = text_feature_of(self.owner, model, self.text_feature)
    texts = np.asarray(features[text], dtype=object).reshape(-1)
    return text, [word_pieces(t) for t in texts]

  def _targets(self, model, features, target):
    outputs = self.outputs_at(model, features)
    targets = base.resolve_targets(model, outputs, target)
    return targets, outputs[np.arange(len(targets)), targets].astype(np.float64)

  def _result(self, model, text, words, scores, targets, prediction, baseline_prediction,
              totals=None, steps=None, extras=None) -> TokenAttribution:
    n = len(words)
    values = np.full((n, len(model.input_names)), np.nan)
    column = model.input_names.index(text)
    values[:, column] = totals if totals is not None else [float(np.sum(s)) for s in scores]
    return TokenAttribution(
        method=self.label, feature_names=list(model.input_names), attributions=values,
        target=targets, prediction=prediction, baseline_prediction=baseline_prediction,
        skipped_features=self.skipped_features(model), output_kind=model.output_kind,
        steps=steps, extras=dict(extras or {}), text_feature=text,
        tokens=[[w.decode('utf-8', errors='replace') for w in pieces] for pieces in words],
        token_scores=[np.asarray(s, np.float64) for s in scores])


class TokenShap(_TokenMethod):
  """Kernel SHAP over the words of a text; a word is left out by deleting it.

  The value of a coalition of words is the served output on the text made of
  them alone, in their order, with every other input at the example's value:
  the empty coalition is the empty text. Each example's coalitions are
  KernelShap's design for its number of words (paired, stratified; enumerated
  whole when 2^T - 2 <= num_samples, and then exact; never fewer than 2T + 2,
  so a text longer than num_samples words still has a determined regression),
  and the coalitions of every example of a batch go through one batched
  prediction. Needs nothing
  but the served function, so it explains any model with a text input.
  """
  name = 'token_shap'
  owner = 'TokenShap'

  def __init__(self, num_samples: int = 256, text_feature: Optional[str] = None, seed: int = 0,
               key: Optional[str] = None):
    self.num_samples = check_int(self.owner, 'num_samples', num_samples, minimum=2)
    self.text_feature = text_feature
    self.seed = check_int(self.owner, 'seed', seed, minimum=0)
    self.key = key

  def _design(self, count: int):
    # Fewer coalitions than words leave the regression underdetermined: a long text
    # gets 2T + 2 of them at least.
    budget = min(max(self.num_samples, 2 * count + 2), 2 ** min(count, 62) - 2)
    return kernel_coalitions(count, budget, self.seed)

  def _attribute(self, model, features, reference, target, labels, example_ids):
    text, words = self._words(model, features)
    targets, prediction = self._targets(model, features, target)
    n = len(words)
    # Every edited text of the batch: the empty text of each example, then its coalitions.
    designs = {t: self._design(t) for t in {len(w) for w in words if len(w) >= 2}}
    rows, edited = [], []
    for i, tokens in enumerate(words):
      rows.append(i)
      edited.append(b'')
      if len(tokens) >= 2:
        masks = designs[len(tokens)][0]
        for mask in masks:
          rows.append(i)
          edited.append(join_tokens([w for w, keep in zip(tokens, mask) if keep]))
    rows = np.asarray(rows, np.int64)
    batch = {name: np.asarray(features[name]).reshape(n, -1)[rows].reshape(-1)
             if name != text else np.asarray(edited, dtype=object)
             for name in model.input_names}
    outputs = model.predict(batch) if len(rows) else np.zeros((0, 1), np.float32)
    values = outputs[np.arange(len(rows)), targets[rows]].astype(np.float64)
    empty = np.zeros(n)
    scores, steps = [], np.zeros(n, np.int64)
    position = 0
    for i, tokens in enumerate(words):
      empty[i] = values[position]
      position += 1
      if len(tokens) >= 2:
        masks, weights, _ = designs[len(tokens)]
        coalitions = values[position:position + len(masks)]
        position += len(masks)
        scores.append(solve_kernel_regression(masks, weights, coalitions[None, :],
                                              prediction[i:i + 1], empty[i:i + 1])[0])
        steps[i] = len(masks) + 2
      else:
        scores.append(np.full(len(tokens), prediction[i] - empty[i]))
        steps[i] = 2
    return self._result(model, text, words, scores, targets, prediction, empty, steps=steps)


class _TokenGradientMethod(_TokenMethod):
  """Shared by the gradient methods: the cut, each example's ids and their alignment."""

  def refusal(self, model) -> Optional[str]:
    reason = super().refusal(model)
    if reason:
      return reason
    if not getattr(model, 'differentiable', True):
      return ('need gradients, and the model is '
              f'{getattr(model, "description", "a lookup")}, which has none. Use TokenShap.')
    try:
      embedding_cut(model, self.embedding)
    except ModelAccessError as error:
      return f'cannot cut the model at its embedding: {error}'
    return None

  def _embedded(self, model, features, words, prediction, targets):
    """(cut, model inputs at x, ids at x [N, L], the empty text's ids [N, L]).

    Checks that position p holds the p-th word's own id (each distinct word of
    the batch through the Transform alone) and the empty text's id past the
    words, and that the cut at the example's embeddings gives the explained
    output `prediction`.
    """
    cut = embedding_cut(model, self.embedding)
    text = text_feature_of(self.owner, model, self.text_feature)
    n = len(words)
    inputs = cut.model_inputs(features)
    ids = cut.ids(inputs)
    empty = {name: np.asarray(features[name]).reshape(n, -1)[:, 0] if name != text else
             np.full(n, b'', dtype=object) for name in model.input_names}
    empty_ids = cut.ids(cut.model_inputs(empty))
    vocabulary = sorted({w for pieces in words for w in pieces})
    if vocabulary and n:
      alone = {name: np.repeat(empty[name][:1], len(vocabulary)) for name in model.input_names}
      alone[text] = np.asarray(vocabulary, dtype=object)
      id_of = dict(zip(vocabulary, cut.ids(cut.model_inputs(alone))[:, 0].tolist()))
    for i, pieces in enumerate(words):
      seen = min(len(pieces), cut.length)
      expected = [id_of[w] for w in pieces[:seen]]
      if ids[i, :seen].tolist() != expected or not np.array_equal(ids[i, seen:],
                                                                  empty_ids[i, seen:]):
        raise ModelAccessError(
            f'{self.owner}: the embedding positions of the model do not follow the words of '
            f'feature {text!r}: example {i} has {len(pieces)} words, and its ids are not each '
            'word\'s own id in order, then the empty text\'s (a Transform that drops, merges '
            'or adds tokens), so position scores are not word scores. Use TokenShap.')
    at_x = cut.predict(inputs, cut.embed(ids))[np.arange(n), targets].astype(np.float64)
    if not np.allclose(at_x, prediction, rtol=1e-4, atol=1e-4):
      worst = int(np.argmax(np.abs(at_x - prediction)))
      raise ModelAccessError(
          f'{self.owner}: the model cut at its embedding {cut.lookup_node!r} gives '
          f'{at_x[worst]:.6g} for example {worst}, the model {prediction[worst]:.6g}, so it '
          'is not the explained function. Use TokenShap.')
    return cut, inputs, ids, empty_ids

  @staticmethod
  def _word_scores(position_scores: np.ndarray, words, length: int):
    return [np.concatenate([position_scores[i, :min(len(w), length)],
                            np.zeros(max(0, len(w) - length))]) for i, w in enumerate(words)]


class TokenIntegratedGradients(_TokenGradientMethod):
  """Integrated Gradients at the embedding, from the empty text's embeddings.

  The path runs from the embeddings of the empty text (the padding, position
  by position) to the example's, with the other inputs at the example's
  values; a word's score is the integral at its position summed over the
  embedding dimensions. Scores sum to f(text) - f('') up to the quadrature
  error (`completeness_error`). Words past the model's sequence length are
  not seen by it and score 0.
  """
  name = 'token_integrated_gradients'
  owner = 'TokenIntegratedGradients'

  def __init__(self, steps: int = 32, rule: str = 'gauss_legendre',
               text_feature: Optional[str] = None, embedding: Optional[str] = None,
               key: Optional[str] = None):
    self.steps = check_int(self.owner, 'steps', steps, minimum=2)
    self.rule = check_choice(self.owner, 'rule', rule,
                             ('gauss_legendre', 'riemann_middle', 'trapezoid'))
    self.text_feature = text_feature
    self.embedding = embedding
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    text, words = self._words(model, features)
    targets, prediction = self._targets(model, features, target)
    cut, inputs, ids, empty_ids = self._embedded(model, features, words, prediction, targets)
    n, m = len(words), self.steps
    alphas, weights = integration_nodes(m, self.rule)
    baseline_prediction = np.zeros(n)
    scores = np.zeros((n, cut.length))
    # Whole examples per call: every interpolation point of one in the same call.
    per_call = max(1, cut.rows_per_call // m)
    for rows in _chunks(n, per_call):
      count = rows.stop - rows.start
      x, b = cut.embed(ids[rows]), cut.embed(empty_ids[rows])
      baseline_prediction[rows] = cut.predict([i[rows] for i in inputs], b)[
          np.arange(count), targets[rows]]
      rep = np.repeat(np.arange(count), m)
      points = (b[rep] + alphas[np.tile(np.arange(m), count)][:, None, None]
                .astype(np.float32) * (x[rep] - b[rep]))
      _, grads = cut.gradients([i[rows][rep] for i in inputs], points, targets[rows][rep])
      mean = np.einsum('rld,r->rld', grads.astype(np.float64), np.tile(weights, count)).reshape(
          count, m, cut.length, cut.dimension).sum(axis=1)
      scores[rows] = np.einsum('nld,nld->nl', mean, (x - b).astype(np.float64))
    return self._result(model, text, words, self._word_scores(scores, words, cut.length),
                        targets, prediction, baseline_prediction,
                        steps=np.full(n, m, np.int64))


class TokenExpectedGradients(_TokenGradientMethod):
  """Expected Gradients at the embedding: baselines are background texts' embeddings.

  For each example, num_samples (background text, alpha) draws
  (`expected_gradients_draws`, as ExpectedGradients makes them); the point is
  b + alpha (x - b) in embedding space and a position's score is
  (x - b) . gradient, averaged. baseline_prediction is the mean served output
  on the background texts used. The text feature's value is the sum over all
  positions; positions past the example's words, where a background text had
  words, add to it without belonging to a word of the example, so the word
  scores alone sum to a little less when background texts are longer.
  """
  name = 'token_expected_gradients'
  owner = 'TokenExpectedGradients'
  requires_background = True

  def __init__(self, num_samples: int = 32, background_size: int = 50,
               text_feature: Optional[str] = None, embedding: Optional[str] = None,
               seed: int = 0, key: Optional[str] = None):
    self.num_samples = check_int(self.owner, 'num_samples', num_samples)
    self.background_size = check_int(self.owner, 'background_size', background_size)
    self.text_feature = text_feature
    self.embedding = embedding
    self.seed = check_int(self.owner, 'seed', seed, minimum=0)
    self.key = key

  def _attribute(self, model, features, reference, target, labels, example_ids):
    text, words = self._words(model, features)
    targets, prediction = self._targets(model, features, target)
    cut, inputs, ids, _ = self._embedded(model, features, words, prediction, targets)
    background = np.asarray(reference.background.get(text, []), dtype=object)
    background = background[:self.background_size]
    if not len(background):
      raise ConfigError(f'{self.owner}: the background sample has no texts of {text!r}.')
    n, s, k = len(words), self.num_samples, len(background)
    draws = [expected_gradients_draws(s, k, np.random.default_rng([self.seed, int(i)]))
             for i in example_ids]
    scores = np.zeros((n, cut.length))
    baseline_prediction = np.zeros(n)
    per_call = max(1, cut.rows_per_call // s)
    for rows in _chunks(n, per_call):
      members = np.arange(rows.start, rows.stop)
      picked = np.concatenate([draws[i][0] for i in members])
      alphas = np.concatenate([draws[i][1] for i in members])
      weights = np.concatenate([draws[i][2] for i in members])
      rep = np.repeat(members, s)
      # Background texts with the example's other inputs, through the Transform.
      base_features = {name: np.asarray(features[name]).reshape(n, -1)[rep].reshape(-1)
                       for name in model.input_names}
      base_features[text] = background[picked]
      base_inputs = cut.model_inputs(base_features)
      b = cut.embed(cut.ids(base_inputs))
      x = cut.embed(ids[rep])
      points = (b + alphas[:, None, None].astype(np.float32) * (x - b)).astype(np.float32)
      _, grads = cut.gradients([i[rep] for i in inputs], points, targets[rep])
      contributions = np.einsum('rld,rld->rl', grads.astype(np.float64),
                                (x - b).astype(np.float64)) * weights[:, None]
      scores[rows] = contributions.reshape(len(members), s, cut.length).sum(axis=1)
      at_background = cut.predict([i[rep] for i in inputs], b)[
          np.arange(len(rep)), targets[rep]]
      baseline_prediction[rows] = (at_background.astype(np.float64) * weights).reshape(
          len(members), s).sum(axis=1)
    return self._result(model, text, words, self._word_scores(scores, words, cut.length),
                        targets, prediction, baseline_prediction, totals=scores.sum(axis=1),
                        steps=np.full(n, s, np.int64), extras={'background_size': int(k)})


def token_totals(words, scores) -> Dict[str, List[float]]:
  """{word: [occurrences, sum of scores, sum of |scores|]} over examples' words."""
  totals: Dict[str, List[float]] = {}
  for tokens, values in zip(words, scores):
    for token, value in zip(tokens, np.asarray(values, np.float64).tolist()):
      entry = totals.setdefault(token, [0, 0.0, 0.0])
      entry[0] += 1
      entry[1] += value
      entry[2] += abs(value)
  return totals


def merge_token_totals(partials) -> Dict[str, List[float]]:
  """token_totals of several batches as one (Beam's CombinePerKey)."""
  merged: Dict[str, List[float]] = {}
  for partial in partials:
    for token, (count, total, absolute) in partial.items():
      entry = merged.setdefault(token, [0, 0.0, 0.0])
      entry[0] += count
      entry[1] += total
      entry[2] += absolute
  return merged


def top_tokens(result: TokenAttribution, k: int = 10) -> List[Tuple[str, float, int]]:
  """(word, mean |score|, occurrences) of a result's k words with the largest mean |score|."""
  totals = token_totals(result.tokens, result.token_scores)
  ranked = sorted(((t, absolute / count, count) for t, (count, _, absolute) in totals.items()),
                  key=lambda item: -item[1])
  return ranked[:k]
