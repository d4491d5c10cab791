"""Models written with `tf.saved_model.save`, as TFX's own trainer modules write them.

There is no Keras metadata to rebuild a Keras model from, but the SavedModel
keeps what we need: the model's traced call (`__call__`, one concrete
function per `training` value), its named heads, and — as TFX's examples
attach it with `model.tft_layer = tf_transform_output.transform_features_layer()`
— the Transform graph. `RestoredModelFunction` composes

    raw features --(Transform layer)--> transformed features --(model call)--> output head

so attributions are taken with respect to the raw features the served
function parses, and differentiated end to end through the transform.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import tensorflow as tf

from tfx_explain.engine import graph_inspection
from tfx_explain.engine.adapters import per_example_layout
from tfx_explain.engine.model import (DEFAULT_MAX_ROWS, OUTPUT_LOGIT, OUTPUT_PROBABILITY,
                                      OUTPUT_REGRESSION, ModelAccessError, ModelFunction)


def saved_call(loaded, training: bool = False):
  """The restored call of a saved Keras model traced with this `training` value, or None.

  A model traced once only (no `training` argument) serves both.
  """
  call = getattr(loaded, '__call__', None)
  functions = list(getattr(call, 'concrete_functions', None) or [])
  if not functions:
    return None
  for function in functions:
    args = function.structured_input_signature[0]
    if len(args) >= 2 and args[1] is training:
      return function
  return functions[0]


def _input_layout(function):
  """(names, specs, structure) of a call's first argument: a list, a dict or one tensor."""
  first = function.structured_input_signature[0][0]
  if isinstance(first, Mapping):
    names = sorted(first)
    return names, {n: first[n] for n in names}, 'dict'
  if isinstance(first, (list, tuple)):
    names = [spec.name for spec in first]
    return names, dict(zip(names, first)), 'list'
  return [first.name], {first.name: first}, 'tensor'


def restored_transform_layers(loaded) -> dict:
  """The TFT layers a model carries, by attribute: `tft_layer` in TFX's penguin example,
  `tft_layer_inference` and `tft_layer_eval` in its taxi template."""
  layers = {}
  for name in dir(loaded):
    if name.startswith('__'):
      continue
    try:
      child = getattr(loaded, name)
    except Exception:  # pylint: disable=broad-except
      continue
    # What tft's TransformFeaturesLayer keeps its SavedModel loader under, or the
    # attribute name TFX's examples use.
    if hasattr(child, '_saved_model_loader_tracked_dict') or name.startswith('tft_layer'):
      layers[name] = child
  return layers


class TransformLayer:
  """A Transform graph as a function of raw feature tensors.

  From the model itself (the restored `tft_layer`, one concrete function per
  traced set of inputs) or from a Transform output folder (tft's
  TransformFeaturesLayer).
  """

  def __init__(self, call, input_specs: Mapping[str, tf.TensorSpec], source: str):
    self._call = call
    self.input_specs = dict(input_specs)
    self.source = source

  def __call__(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return self._call({n: features[n] for n in self.input_specs})

  @classmethod
  def from_restored(cls, layers: Mapping[str, object], served: Optional[Sequence[str]],
                    source: str):
    """From the restored TFT layer(s) a model carries: the trace its serving made."""
    candidates = []
    for attribute, layer in sorted(layers.items()):
      functions = getattr(getattr(layer, '__call__', None), 'concrete_functions', None) or []
      for function in functions:
        specs = function.structured_input_signature[0][0]
        if isinstance(specs, Mapping):
          candidates.append((attribute, function, dict(specs)))
    if not candidates:
      raise ModelAccessError(f'The model at {source} carries a Transform layer '
                             f'({sorted(layers)}) with no saved call; pass the Transform '
                             "component's output as transform_graph.")
    if served is not None:
      # The trace the serving signature made (the label is not parsed at serving time).
      fitting = [c for c in candidates if set(c[2]) <= set(served)]
      candidates = fitting or candidates
    # The serving trace has the most inputs serving parses; among equals, the fewest others.
    served_set = set(served or ())
    attribute, function, specs = max(
        candidates, key=lambda c: (len(set(c[2]) & served_set), -len(c[2])))
    return cls(lambda features: function(features), specs, f'{source} ({attribute})')

  @classmethod
  def from_transform_output(cls, transform_graph_dir: str, needed: Sequence[str]):
    import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
    output = tft.TFTransformOutput(transform_graph_dir)
    layer = output.transform_features_layer()
    raw_spec = output.raw_feature_spec()
    specs = {}
    for name in needed:
      spec = raw_spec.get(name)
      if spec is None:
        continue
      if not isinstance(spec, tf.io.FixedLenFeature):
        specs[name] = spec   # reported by RestoredModelFunction as not dense
        continue
      specs[name] = tf.TensorSpec([None] + list(spec.shape), spec.dtype, name=name)
    return cls(layer, specs, f'{transform_graph_dir} (Transform output)')


def output_kind_from_op(op_type: str, num_outputs: int) -> str:
  if op_type in graph_inspection.PROBABILITY_OPS:
    return OUTPUT_PROBABILITY
  return OUTPUT_REGRESSION if num_outputs == 1 else OUTPUT_LOGIT


class RestoredModelFunction(ModelFunction):
  """A SavedModel's restored model call, optionally behind its Transform layer."""

  autograph = False   # concrete functions: there is no Python to convert

  def __init__(self, loaded, path: str, transform: Optional[TransformLayer] = None,
               served_features: Optional[List[graph_inspection.ParsedFeature]] = None,
               output_key: Optional[str] = None, output_kind: Optional[str] = None,
               max_rows: int = DEFAULT_MAX_ROWS):
    self._loaded = loaded   # keeps variables and tables alive
    self.path = path
    call = saved_call(loaded, training=False)
    if call is None:
      raise ModelAccessError(
          f'The SavedModel at {path} has no Keras model call saved with it and no signature '
          'with dense feature inputs. Save the Keras model itself (tf.saved_model.save(model, '
          '...) or model.save(...)), so its traced call is kept.')
    self._model_call = call
    self._model_inputs, self._model_specs, self._structure = _input_layout(call)
    self.transform = transform
    outputs = call.structured_outputs
    self.head_names = sorted(outputs) if isinstance(outputs, Mapping) else []
    if self.head_names:
      if output_key is None:
        if len(self.head_names) != 1:
          raise ModelAccessError(
              f'The model at {path} has {len(self.head_names)} heads {self.head_names}; set '
              'output_key to the one to explain.')
        output_key = self.head_names[0]
      if output_key not in self.head_names:
        raise ModelAccessError(f'output_key {output_key!r} is not a head of the model at '
                               f'{path}; heads: {self.head_names}.')
      out_spec = outputs[output_key]
      flat_index = sorted(outputs).index(output_key)
    else:
      if output_key is not None:
        raise ModelAccessError(f'output_key {output_key!r} was set, but the model at {path} '
                               'has a single unnamed output.')
      out_spec = outputs
      flat_index = 0
    self.output_key = output_key
    self.output_index = flat_index   # among the call's flat outputs
    num_outputs = int(out_spec.shape[-1]) if out_spec.shape.rank and out_spec.shape.rank > 1 \
        and out_spec.shape[-1] else 1
    op_types = graph_inspection.output_op_types(call)
    kind = output_kind or output_kind_from_op(op_types[min(flat_index, len(op_types) - 1)],
                                              num_outputs)
    # Which example feature feeds each model input: the same name, except that a
    # model with one unnamed tensor input (Sequential, Input(shape=(30,))) is fed
    # the one feature serving parses for it.
    self._feature_of = {n: n for n in self._model_inputs}
    if transform is not None:
      names, specs = self._raw_inputs(transform, served_features)
    else:
      self._alias_single_input(served_features)
      names = [self._feature_of[n] for n in self._model_inputs]
      specs = {self._feature_of[n]: self._model_specs[n] for n in self._model_inputs}
    dtypes, ranks, sizes = {}, {}, {}
    for name in names:
      spec = specs[name]
      if not isinstance(spec, tf.TensorSpec):
        raise ModelAccessError(
            f'Feature {name!r} reaches the model at {path} as a variable-length (sparse or '
            'ragged) tensor, so an example has no fixed set of values to attribute to. Give it '
            "a fixed shape in the schema (SchemaGen's infer_feature_shape=True, with a value in "
            'every example), or leave it out of the model.')
      dtypes[name] = spec.dtype
      ranks[name], sizes[name] = per_example_layout(name, spec.shape)
    super().__init__(names, dtypes, ranks, kind, num_outputs, max_rows, sizes)

  def _alias_single_input(self, served):
    if served is None or len(self._model_inputs) != 1:
      return
    [model_input] = self._model_inputs
    served_names = [f.name for f in served]
    if model_input in served_names:
      return
    dense = [f for f in served if f.kind == 'dense']
    if len(dense) == 1:
      self._feature_of[model_input] = dense[0].name

  def _raw_inputs(self, transform: TransformLayer, served):
    specs = dict(transform.input_specs)
    if served is not None:
      served_names = {f.name for f in served}
      unserved = sorted(set(specs) - served_names)
      if unserved:
        raise ModelAccessError(
            f'The Transform layer of the model at {self.path} ({transform.source}) takes '
            f'{unserved}, which serving_default does not parse, so no trace of it matches the '
            "served function. Pass the Transform component's output as transform_graph.")
    return sorted(specs), specs

  def _call(self, inputs):
    return self.outputs(inputs)

  def outputs(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    """The explained head on (raw) input tensors; training=True runs the training trace."""
    call = self._model_call if not training else saved_call(self._loaded, training=True)
    return self.call_model(call, self.model_inputs_of(inputs))

  @property
  def model_call(self):
    """The saved call (training=False) the explained function is made of."""
    return self._model_call

  def model_input_specs(self) -> Dict[str, tf.TensorSpec]:
    """The saved call's inputs (after the Transform), by name."""
    return {n: self._model_specs[n] for n in self._model_inputs}

  def model_inputs_of(self, inputs: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """What the saved call takes, by input name, for (raw) input tensors: through the
    Transform when there is one, cast to the call's dtypes."""
    if self.transform is not None:
      transformed = self.transform(inputs)
      missing = [n for n in self._model_inputs if n not in transformed]
      if missing:
        raise ModelAccessError(
            f'The model at {self.path} takes {missing}, which the Transform '
            f'({self.transform.source}) does not produce; it produces {sorted(transformed)}.')
      inputs = transformed
    else:
      inputs = {n: inputs[self._feature_of[n]] for n in self._model_inputs}
    return {n: tf.cast(inputs[n], self._model_specs[n].dtype)
               if inputs[n].dtype != self._model_specs[n].dtype else inputs[n]
            for n in self._model_inputs}

  def call_model(self, call, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """The explained head of `call` on the model's own inputs (model_inputs_of)."""
    model_inputs = [inputs[n] for n in self._model_inputs]
    if self._structure == 'dict':
      argument = dict(zip(self._model_inputs, model_inputs))
    elif self._structure == 'list':
      argument = model_inputs
    else:
      argument = model_inputs[0]
    rest = tuple(call.structured_input_signature[0][1:])
    # The call was traced with (inputs, training, mask, ...): pass the rest as traced.
    outputs = call(argument, *rest, **dict(call.structured_input_signature[1]))
    if self.output_key is not None:
      outputs = outputs[self.output_key]
    return outputs

  @property
  def loaded(self):
    return self._loaded

  def model_variables(self) -> List[tf.Variable]:
    """The model's trainable variables (the Transform layer's are not the model's)."""
    transform_ids = {id(v) for layer in restored_transform_layers(self._loaded).values()
                     for v in getattr(layer, 'variables', [])}
    variables = getattr(self._loaded, 'trainable_variables', None) or self._loaded.variables
    return [v for v in variables if id(v) not in transform_ids]

  def variables_of_last_layer(self):
    """(name, variables) of the last layer with weights, for sanity checks that re-draw them.

    With a head chosen (output_key), the layer of that name: the one whose weights
    the explained output depends on last.
    """
    if self.output_key is not None:
      head = [v for v in self.model_variables() if v.name.split('/')[0] == self.output_key]
      if head:
        return self.output_key, head
    children = [name for name in dir(self._loaded) if name.startswith('layer_with_weights-')]
    if children:
      last = max(children, key=lambda n: int(n.rsplit('-', 1)[1]))
      return last, list(getattr(self._loaded, last).variables)
    # Subclassed models name their children by attribute: take the variables of the layer
    # that holds the last kernel.
    variables = self.model_variables()
    kernels = [v for v in variables if v.shape.rank is not None and v.shape.rank >= 2]
    if not kernels:
      return None, []
    layer = kernels[-1].name.split('/')[0]
    return layer, [v for v in variables if v.name.split('/')[0] == layer]

  def variables_by_layer(self) -> List[tuple]:
    """[(name, trainable variables)] of every layer with any, top (output) layer first.

    For cascading randomisation. Keras keeps a layer's weights under
    `layer_with_weights-<i>`, numbered in the model's layer order; the Transform
    layer is not among them (it has none), and with a head chosen the other
    heads are left out: the explained output does not depend on them.
    Subclassed models: variables grouped by layer name, in the order saved.
    """
    transform_ids = {id(v) for layer in restored_transform_layers(self._loaded).values()
                     for v in getattr(layer, 'variables', [])}
    other_heads = set(self.head_names) - {self.output_key}
    children = [name for name in dir(self._loaded) if name.startswith('layer_with_weights-')]
    layers = []
    for child in sorted(children, key=lambda n: -int(n.rsplit('-', 1)[1])):
      variables = [v for v in getattr(self._loaded, child).variables
                   if v.trainable and id(v) not in transform_ids]
      if variables and variables[0].name.split('/')[0] not in other_heads:
        layers.append((variables[0].name.split('/')[0], variables))
    if children:
      # The explained head is the top layer, wherever Keras numbered it.
      return sorted(layers, key=lambda layer: layer[0] != self.output_key)
    groups: Dict[str, List[tf.Variable]] = {}
    for variable in self.model_variables():
      if variable.trainable:
        groups.setdefault(variable.name.split('/')[0], []).append(variable)
    return [(name, groups[name]) for name in reversed(list(groups)) if name not in other_heads]
