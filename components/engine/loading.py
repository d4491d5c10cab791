"""Loading a model for attribution from any SavedModel a TFX Trainer writes.

    Keras `model.save` (keras_metadata.pb)    -> KerasModelFunction (or image_model.ImageModel)
    `tf.saved_model.save(model, signatures=)` -> RestoredModelFunction: the model's saved call
    either, with a Transform layer             -> RestoredModelFunction over the raw features
    `signature_name=` a dense-feature signature -> SignatureModelFunction

The Transform layer is the model's own `tft_layer` (as TFX's example modules
attach it) or the Transform component's output given as `transform_graph`.
With it, attributions are taken with respect to the raw features that the
model's `serving_default` parses.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Optional, Sequence

import tensorflow as tf

from tfx_explain.engine import forest_model
from tfx_explain.engine import graph_inspection
from tfx_explain.engine.adapters import KerasModelFunction, SignatureModelFunction
from tfx_explain.engine.image_model import FlatImageModel, ImageModel, is_image_model
from tfx_explain.engine.model import DEFAULT_MAX_ROWS, ModelAccessError, ModelFunction
from tfx_explain.engine.restored import (RestoredModelFunction, TransformLayer,
                                         restored_transform_layers)

SERVING_SIGNATURE = 'serving_default'
KERAS_METADATA_FILE = 'keras_metadata.pb'


def serving_model_dir(model_uri: str) -> str:
  """Trainer writes `<uri>/Format-Serving`; accept either that or the SavedModel itself."""
  # TFX's path_utils.serving_model_dir; the engine does not import TFX.
  candidate = os.path.join(model_uri, 'Format-Serving')
  if tf.io.gfile.isdir(candidate):
    return candidate
  return model_uri


def has_keras_metadata(path: str) -> bool:
  return tf.io.gfile.exists(os.path.join(path, KERAS_METADATA_FILE))


def load_keras_model(path: str):
  """The tf_keras model in a SavedModel, without running Python bytecode stored in it.

  Keras keeps Lambda layers' Python functions as marshalled bytecode in
  keras_metadata.pb; in safe mode it does not unmarshal them and calls the
  traced graph saved with the layer instead. A model file from a pipeline
  input must not run code on the machine that explains it.
  """
  if not has_keras_metadata(path):
    raise ModelAccessError(
        f'{path} was saved with tf.saved_model.save, so it has no {KERAS_METADATA_FILE} to '
        'rebuild the Keras model from. Save it with model.save(path, save_format="tf") to '
        'use it here.')
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tf_keras.src.saving import serialization_lib  # pylint: disable=g-import-not-at-top
  with serialization_lib.SafeModeScope(True):
    return tf_keras.models.load_model(path, compile=False)


# Models loaded with shared=True and still in use in this process.
# AttributionGen's executor and its Beam workers both load the model; with the
# in-process DirectRunner they share one copy instead of loading (and tracing)
# it twice. Callers that change a model's weights (sanity checks) load their own.
_LOADED_MODELS = weakref.WeakValueDictionary()
_LOADED_MODELS_LOCK = threading.Lock()


def load_model_function(model_path: str, signature_name: Optional[str] = None,
                        output_key: Optional[str] = None, output_kind: Optional[str] = None,
                        max_rows: int = DEFAULT_MAX_ROWS, shared: bool = False,
                        transform_graph: Optional[str] = None,
                        with_transform: bool = True,
                        image_shape: Optional[Sequence[int]] = None) -> ModelFunction:
  """Loads a model for attribution.

  Args:
    model_path: a Trainer Model artifact URI or a SavedModel directory.
    signature_name: explain this signature (it must take dense feature tensors)
      instead of the model's own call.
    output_key: the head to explain when the model has several.
    output_kind: overrides the recorded kind ('probability', 'logit', 'regression').
    shared: for callers that never change the model: while a model loaded that
      way is in use, loading the same unchanged SavedModel with the same
      arguments and shared=True returns it again.
    transform_graph: a Transform output folder; its layer is put in front of the
      model, so attributions are in raw feature space.
    with_transform: False explains the model's own (transformed) inputs even when
      it carries a Transform layer.
    image_shape: the model takes images as one flat pixel vector of this layout:
      it comes back as an image_model.FlatImageModel over the (shared) model.
  """
  if image_shape is not None:
    model = load_model_function(model_path, signature_name, output_key, output_kind, max_rows,
                                shared, transform_graph, with_transform)
    return model if isinstance(model, ImageModel) else FlatImageModel(model, image_shape)
  path = serving_model_dir(model_path)
  graph_file = os.path.join(path, 'saved_model.pb')
  if not tf.io.gfile.exists(graph_file):
    raise ModelAccessError(
        f'{path} is not a SavedModel directory (no saved_model.pb). Point the model input at a '
        "Trainer output (its 'Format-Serving' folder) or a SavedModel.")
  arguments = (signature_name, output_key, output_kind, max_rows,
               transform_graph if with_transform else None, with_transform)
  if not shared:
    return _load(path, *arguments)
  stat = tf.io.gfile.stat(graph_file)
  key = (os.path.abspath(path) if '://' not in path else path, stat.length, stat.mtime_nsec,
         arguments)
  with _LOADED_MODELS_LOCK:
    model = _LOADED_MODELS.get(key)
  if model is None:
    model = _load(path, *arguments)
    with _LOADED_MODELS_LOCK:
      _LOADED_MODELS[key] = model
  return model


def _load(path: str, signature_name, output_key, output_kind, max_rows,
          transform_graph, with_transform) -> ModelFunction:
  assets = forest_model.forest_assets(path)
  if assets is not None:
    # A decision forest: its ops must be registered before the SavedModel loads.
    forest_model.import_tfdf()
    served = _load_served(path, signature_name, output_key, output_kind, max_rows,
                          transform_graph, with_transform)
    return forest_model.ForestModelFunction(served, forest_model.read_forest(assets), path)
  return _load_served(path, signature_name, output_key, output_kind, max_rows,
                      transform_graph, with_transform)


def _load_served(path: str, signature_name, output_key, output_kind, max_rows,
                 transform_graph, with_transform) -> ModelFunction:
  if signature_name is not None:
    loaded = tf.saved_model.load(path)
    if signature_name not in loaded.signatures:
      raise ModelAccessError(f'Signature {signature_name!r} not found in {path}; available: '
                             f'{sorted(loaded.signatures)}.')
    function = SignatureModelFunction(loaded.signatures[signature_name], output_key,
                                      output_kind, max_rows, signature_name)
    function._loaded = loaded  # keep the trackable alive
    return function
  if has_keras_metadata(path) and transform_graph is None:
    keras_model = load_keras_model(path)
    carries_transform = any(name.startswith('tft_layer') for name in dir(keras_model))
    if not carries_transform and getattr(keras_model, 'inputs', None):
      if is_image_model(keras_model):
        return ImageModel(keras_model, output_kind=output_kind, max_rows=max_rows)
      if output_key is None and len(keras_model.outputs) == 1:
        return KerasModelFunction(keras_model, output_kind=output_kind, max_rows=max_rows)
  loaded = tf.saved_model.load(path)
  served = served_features(loaded) if with_transform else None
  transform = transform_layer(loaded, path, served, transform_graph) if with_transform else None
  if _has_saved_call(loaded):
    return RestoredModelFunction(loaded, path, transform, served, output_key, output_kind,
                                 max_rows)
  dense = [name for name, sig in loaded.signatures.items() if _takes_dense_features(sig)]
  if len(dense) == 1 and transform is None:
    function = SignatureModelFunction(loaded.signatures[dense[0]], output_key, output_kind,
                                      max_rows, dense[0])
    function._loaded = loaded  # keep the trackable alive
    return function
  raise ModelAccessError(
      f'Cannot differentiate the model at {path}: it has no saved Keras model call and '
      f'{"no" if not dense else "several"} signature(s) with dense feature inputs '
      f'(signatures: {sorted(loaded.signatures)}). Save the Keras model (tf.saved_model.save or '
      'model.save keeps its call), or export a signature whose inputs are per-feature dense '
      'tensors and set signature_name.')


def served_features(loaded):
  """What the model's serving_default parses from tf.Examples, or None."""
  serving = loaded.signatures.get(SERVING_SIGNATURE)
  return graph_inspection.parsed_features(serving) if serving is not None else None


def transform_layer(loaded, path: str, served, transform_graph: Optional[str] = None):
  """The Transform in front of the model: the given Transform output, else the model's own.

  served: what serving_default parses (served_features), or None.
  """
  if transform_graph is not None:
    needed = [f.name for f in served] if served is not None else _raw_feature_names(
        transform_graph)
    return TransformLayer.from_transform_output(transform_graph, needed)
  layers = restored_transform_layers(loaded)
  if layers:
    return TransformLayer.from_restored(
        layers, [f.name for f in served] if served is not None else None, path)
  return None


def label_function(model_path: str, label_key: str, transform_graph: Optional[str] = None):
  """labels_of(raw features, serialized examples) for a label the Transform computes, or None.

  TFX's penguin example keeps `species_xf`; its taxi template computes `tips_xf`
  from fare and tips. From the Transform output when given, else from the
  model's own signature over serialized examples that returns it
  (`transform_features` in TFX's examples).
  """
  if transform_graph is not None:
    import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
    output = tft.TFTransformOutput(transform_graph)
    if label_key not in output.transformed_feature_spec():
      return None
    layer = TransformLayer.from_transform_output(transform_graph,
                                                sorted(output.raw_feature_spec()))
    return lambda features, serialized: layer(features)[label_key]
  loaded = tf.saved_model.load(serving_model_dir(model_path))
  for name, signature in sorted(loaded.signatures.items()):
    inputs = signature.structured_input_signature[1]
    if len(inputs) == 1 and next(iter(inputs.values())).dtype == tf.string and \
        label_key in signature.structured_outputs:
      [argument] = list(inputs)

      def labels_of(features, serialized, signature=signature, argument=argument):
        del features
        return signature(**{argument: serialized})[label_key]

      labels_of.keep_alive = loaded
      labels_of.source = name
      return labels_of
  return None


def load_restored_model(model_path: str, output_key: Optional[str] = None,
                        transform_graph: Optional[str] = None) -> RestoredModelFunction:
  """The SavedModel's saved call (behind its Transform), Keras metadata or not: for callers
  that change or re-export the model itself, as pruning does."""
  path = serving_model_dir(model_path)
  loaded = tf.saved_model.load(path)
  if not _has_saved_call(loaded):
    raise ModelAccessError(f'The SavedModel at {path} has no saved Keras model call; save the '
                           'Keras model (tf.saved_model.save(model, ...) or model.save).')
  served = served_features(loaded)
  return RestoredModelFunction(loaded, path, transform_layer(loaded, path, served,
                                                             transform_graph),
                               served, output_key)


def _has_saved_call(loaded) -> bool:
  return bool(getattr(getattr(loaded, '__call__', None), 'concrete_functions', None))


def _raw_feature_names(transform_graph: str):
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  return sorted(tft.TFTransformOutput(transform_graph).raw_feature_spec())


def _takes_dense_features(signature) -> bool:
  spec = signature.structured_input_signature[1]
  if not spec:
    return False
  if len(spec) == 1 and next(iter(spec.values())).dtype == tf.string:
    return False
  return all(s.shape.rank is not None and s.shape.rank <= 2 for s in spec.values())
