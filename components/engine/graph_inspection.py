"""Reading what a saved function does from its graph: which features it parses, what its output is.

A SavedModel's functions are FunctionDefs that call each other through
(Stateful)PartitionedCall nodes. Two questions matter for explaining a model:
- which raw features does `serving_default` parse from tf.Examples, and how
  (dense with a shape, sparse, ragged): those are the features the served
  function depends on, so they are what we attribute to;
- is an output a softmax / sigmoid (probabilities) or a linear layer (logits or
  a regression), found by following the output back to the op that makes it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

_PASS_THROUGH = ('Identity', 'IdentityN', 'Reshape', 'Squeeze', 'ExpandDims', 'Cast')
_CALLS = ('StatefulPartitionedCall', 'PartitionedCall')
PROBABILITY_OPS = ('Softmax', 'Sigmoid')


@dataclasses.dataclass(frozen=True)
class ParsedFeature:
  """One feature a serving function parses out of tf.Examples."""
  name: str
  kind: str            # 'dense', 'sparse' (VarLenFeature) or 'ragged'
  dtype: tf.DType
  shape: Tuple[int, ...] = ()   # dense only: per-example shape, () or (1,) for a scalar


def _library(concrete_function) -> Dict[str, 'tf.compat.v1.FunctionDef']:
  graph_def = concrete_function.graph.as_graph_def()
  return {f.signature.name: f for f in graph_def.library.function}


def _const_strings(nodes, reference: str) -> List[str]:
  node = nodes.get(reference.split(':')[0].lstrip('^'))
  if node is None or node.op != 'Const':
    return []
  values = tf.make_ndarray(node.attr['value'].tensor)
  return [v.decode('utf-8') if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


def parsed_features(concrete_function) -> Optional[List[ParsedFeature]]:
  """Features a function parses with tf.io.parse_example, or None when it parses none."""
  functions = list(_library(concrete_function).values())
  found: List[ParsedFeature] = []
  for function in functions:
    nodes = {n.name: n for n in function.node_def}
    for node in function.node_def:
      if node.op != 'ParseExampleV2':
        continue
      # Inputs: serialized, names, sparse_keys, dense_keys, ragged_keys, dense_defaults...
      sparse_keys = _const_strings(nodes, node.input[2])
      dense_keys = _const_strings(nodes, node.input[3])
      ragged_keys = _const_strings(nodes, node.input[4])
      dense_types = list(node.attr['Tdense'].list.type)
      dense_shapes = [tuple(d.size for d in s.dim) for s in node.attr['dense_shapes'].list.shape]
      sparse_types = list(node.attr['sparse_types'].list.type)
      ragged_types = list(node.attr['ragged_value_types'].list.type)
      for name, dtype, shape in zip(dense_keys, dense_types, dense_shapes):
        found.append(ParsedFeature(name, 'dense', tf.as_dtype(dtype), shape))
      for name, dtype in zip(sparse_keys, sparse_types):
        found.append(ParsedFeature(name, 'sparse', tf.as_dtype(dtype)))
      for name, dtype in zip(ragged_keys, ragged_types):
        found.append(ParsedFeature(name, 'ragged', tf.as_dtype(dtype)))
  if not found:
    return None
  unique = {}
  for feature in found:
    unique.setdefault(feature.name, feature)
  return sorted(unique.values(), key=lambda f: f.name)


def output_op_types(concrete_function) -> List[str]:
  """For each flat output of a concrete function, the type of the op that computes it.

  Follows Identity-like ops and calls into nested functions, so a Keras model's
  restored call reports 'Softmax' for a softmax head and 'BiasAdd' for a
  linear one.
  """
  library = _library(concrete_function)
  graph = concrete_function.graph
  results = []
  for tensor in concrete_function.outputs:
    results.append(_producer_in_graph(graph, tensor, library))
  return results


def _producer_in_graph(graph, tensor, library) -> str:
  op = tensor.op
  while op.type in _PASS_THROUGH and op.inputs:
    index = tensor.value_index if op.type == 'IdentityN' else 0
    tensor = op.inputs[index]
    op = tensor.op
  if op.type in _CALLS:
    function = library.get(op.get_attr('f').name)
    if function is not None:
      found = _producer_in_function(function, function.signature.output_arg[
          tensor.value_index].name, library, 0)
      if found.startswith('arg:'):
        index = [a.name for a in function.signature.input_arg].index(found[4:])
        return _producer_in_graph(graph, op.inputs[index], library)
      return found
  return op.type


def _producer_in_function(function, output_name: str, library, depth: int) -> str:
  """The op type behind a function output, or 'arg:<name>' when it is an argument."""
  return _follow(function, function.ret[output_name], library, depth)


def _follow(function, reference: str, library, depth: int) -> str:
  nodes = {n.name: n for n in function.node_def}
  arguments = {a.name for a in function.signature.input_arg}
  for _ in range(256):
    node_name, *rest = reference.split(':')
    node = nodes.get(node_name)
    if node is None:
      return f'arg:{node_name}' if node_name in arguments else 'unknown'
    if node.op in _PASS_THROUGH and node.input:
      index = int(rest[-1]) if node.op == 'IdentityN' and len(rest) == 2 else 0
      reference = node.input[index]
      continue
    if node.op in _CALLS and depth < 32:
      inner = library.get(node.attr['f'].func.name)
      if inner is not None:
        index = int(rest[-1]) if len(rest) == 2 else 0
        found = _producer_in_function(inner, inner.signature.output_arg[index].name, library,
                                      depth + 1)
        if found.startswith('arg:'):
          # The inner function passes an argument through: continue at the call's input.
          position = [a.name for a in inner.signature.input_arg].index(found[4:])
          reference = node.input[position]
          continue
        return found
    return node.op
  return 'unknown'
