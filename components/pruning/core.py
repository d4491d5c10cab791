"""Magnitude pruning and distillation of tf_keras models (no TFX imports).

    pruned = prune_model(base, PruningConfig(target_sparsity=0.8), steps=500)
    fine-tune with model.fit(..., callbacks=pruning_callbacks(log_dir))
    final = strip(pruned)

Pruning wraps every layer tfmot can prune (Dense, Conv, ...) in
`prune_low_magnitude`; preprocessing layers (Normalization, StringLookup)
are left alone. Losses and distillation follow the model's task
(`pruning/tasks.py`); SavedModels without Keras metadata are pruned through
their saved call (`pruning/saved_model.py`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tfx_explain.configurable import ConfigError, dataclass_fields_from_json
from tfx_explain.validators import check_choice, check_int, check_number

SCHEDULES = ('polynomial', 'constant')


@dataclasses.dataclass
class Distillation:
  """Soft targets from the base model: loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL."""
  temperature: float = 2.0
  alpha: float = 0.5

  def __post_init__(self):
    check_number('Distillation', 'temperature', self.temperature, low=0, low_open=True)
    check_number('Distillation', 'alpha', self.alpha, low=0, high=1)


@dataclasses.dataclass
class PruningConfig:
  """Attributes:
    target_sparsity: fraction of weights set to zero in each pruned layer, in [0, 1).
    schedule: 'polynomial' (sparsity grows from initial_sparsity to the target
      over the fine-tuning steps) or 'constant' (target from the first step).
    fine_tune_steps: training steps on the train split.
    label_key: the label feature.
    skip_layers: names of layers never to prune.
    initial_sparsity: where the polynomial schedule starts.
    pruning_frequency: steps between mask updates.
    batch_size, learning_rate: fine-tuning settings.
    distillation: a Distillation, or None for plain labels.
    train_split, eval_split: example splits to fine-tune and evaluate on.
    output_key: the head the label belongs to, for a model with several.
    task: how to train and measure, when the output does not say it: one of
      pruning.tasks.TASKS ('binary_logit' for a binary classifier on one logit).
  """
  target_sparsity: float = 0.8
  schedule: str = 'polynomial'
  fine_tune_steps: int = 500
  label_key: str = 'label'
  skip_layers: Sequence[str] = ()
  initial_sparsity: float = 0.0
  pruning_frequency: int = 10
  batch_size: int = 32
  learning_rate: float = 1e-3
  distillation: Optional[Distillation] = None
  train_split: str = 'train'
  eval_split: str = 'eval'
  output_key: Optional[str] = None
  task: Optional[str] = None

  def __post_init__(self):
    owner = 'PruningConfig'
    for name in ('target_sparsity', 'initial_sparsity'):
      check_number(owner, name, getattr(self, name), low=0, high=1, high_open=True)
    if self.initial_sparsity > self.target_sparsity:
      raise ConfigError(f'{owner}: initial_sparsity {self.initial_sparsity} is above '
                        f'target_sparsity {self.target_sparsity}.')
    check_choice(owner, 'schedule', self.schedule, SCHEDULES)
    for name in ('fine_tune_steps', 'pruning_frequency', 'batch_size'):
      check_int(owner, name, getattr(self, name))
    if not isinstance(self.label_key, str) or not self.label_key:
      raise ConfigError(f'{owner}: label_key must be a feature name, got {self.label_key!r}.')
    check_number(owner, 'learning_rate', self.learning_rate, low=0, low_open=True)
    from tfx_explain.pruning.tasks import TASKS  # pylint: disable=g-import-not-at-top
    if self.task is not None:
      check_choice(owner, 'task', self.task, TASKS)
    self.skip_layers = list(self.skip_layers)
    if isinstance(self.distillation, dict):
      self.distillation = Distillation(**self.distillation)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'PruningConfig':
    data = dataclass_fields_from_json(cls, text)
    if data.get('distillation') is not None:
      data['distillation'] = Distillation(**data['distillation'])
    return cls(**data)


def _tfmot():
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  return tfmot


def prunable_layer_names(model, skip_layers: Sequence[str] = ()) -> List[str]:
  """Layers tfmot knows how to prune and that carry weights."""
  from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry  # pylint: disable=g-import-not-at-top
  registry = prune_registry.PruneRegistry
  return [layer.name for layer in model.layers
          if layer.name not in skip_layers and layer.weights and registry.supports(layer)]


def pruning_schedule(config: PruningConfig):
  sparsity = _tfmot().sparsity.keras
  end_step = max(1, int(config.fine_tune_steps * 0.8))   # hold the target for the last 20 %
  if config.schedule == 'constant':
    return sparsity.ConstantSparsity(config.target_sparsity, begin_step=0,
                                     frequency=config.pruning_frequency)
  return sparsity.PolynomialDecay(initial_sparsity=config.initial_sparsity,
                                  final_sparsity=config.target_sparsity, begin_step=0,
                                  end_step=end_step, frequency=config.pruning_frequency)


def prune_model(model, config: PruningConfig):
  """A copy of `model` with every prunable layer wrapped by prune_low_magnitude."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  unknown = [name for name in config.skip_layers if name not in {l.name for l in model.layers}]
  if unknown:
    raise ConfigError(f'PruningConfig: skip_layers names unknown layer(s) {unknown}; layers: '
                      f'{[l.name for l in model.layers]}.')
  targets = set(prunable_layer_names(model, config.skip_layers))
  if not targets:
    raise ConfigError('The base model has no prunable layers (Dense, Conv, ...) outside '
                      f'skip_layers; layers: {[type(l).__name__ for l in model.layers]}.')
  schedule = pruning_schedule(config)
  prune = _tfmot().sparsity.keras.prune_low_magnitude

  def clone(layer):
    if layer.name in targets:
      # A fresh copy: the base model stays intact (it is the distillation teacher).
      return prune(layer.__class__.from_config(layer.get_config()), pruning_schedule=schedule)
    # Preprocessing layers (vocabularies, normalisation) are shared, not re-created:
    # their state does not survive a config round trip and they are not trained.
    return layer

  pruned = tf_keras.models.clone_model(model, clone_function=clone)
  _copy_weights_by_layer(model, pruned)
  return pruned


def _copy_weights_by_layer(source, target):
  """Copies each layer's weights into its (possibly wrapped) clone."""
  by_name = {layer.name: layer for layer in source.layers}
  for layer in target.layers:
    if not hasattr(layer, 'layer'):
      continue   # shared with the source
    inner = layer.layer
    original = by_name.get(inner.name)
    if original is None or not original.get_weights():
      continue
    inner.set_weights(original.get_weights())   # kernel/bias live in the wrapped layer


def pruning_callbacks(log_dir: Optional[str]):
  sparsity = _tfmot().sparsity.keras
  callbacks = [sparsity.UpdatePruningStep()]
  if log_dir:
    callbacks.append(sparsity.PruningSummaries(log_dir=log_dir))
  return callbacks


def strip(model):
  return _tfmot().sparsity.keras.strip_pruning(model)


def weight_sparsity(model, layer_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  """Zeros among the kernels of the named (pruned) layers, and parameter counts of the model."""
  pruned_total = pruned_zero = 0
  per_layer = {}
  for layer in model.layers:
    if layer_names is not None and layer.name not in layer_names:
      continue
    for weight in layer.weights:
      if 'kernel' not in weight.name:
        continue
      values = weight.numpy()
      zeros = int(np.sum(values == 0))
      per_layer[layer.name] = zeros / values.size
      pruned_total += values.size
      pruned_zero += zeros
  all_values = [w.numpy() for w in model.weights if w.dtype.is_floating]
  total = int(sum(v.size for v in all_values))
  nonzero = int(sum(np.count_nonzero(v) for v in all_values))
  return {'sparsity': pruned_zero / pruned_total if pruned_total else 0.0,
          'per_layer_sparsity': per_layer, 'total_parameters': total,
          'nonzero_parameters': nonzero}


def gzipped_size(directory: str) -> int:
  """Bytes of a gzip-compressed tar of a directory (what shipping the model costs)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as archive:
    for root, _, files in tf.io.gfile.walk(directory):
      for name in sorted(files):
        path = os.path.join(root, name)
        with tf.io.gfile.GFile(path, 'rb') as f:
          data = f.read()
        info = tarfile.TarInfo(os.path.relpath(path, directory))
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
  return buffer.getbuffer().nbytes
