"""tfx-explain: model explanations as first-class, gated, tracked TFX steps.

    from tfx_explain import AttributionGen, AttributionConfig, IntegratedGradients

Names resolve lazily, so the explanation engine (`tfx_explain.engine`) can be
used from a notebook without importing TFX, and importing this package imports
neither TensorFlow nor TFX. A name not in `_EXPORTS` is looked up in
`tfx_explain.engine`: every method, `explain`, `ReferenceStats`, ... (its `__all__`).
"""

import importlib
import os

# TFMA, tfmot and our components need Keras 2; it must be chosen before
# TensorFlow is first imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

__version__ = '0.1.0'

# Where each name outside the engine lives.
_EXPORTS = {
    'AttributionConfig': 'tfx_explain.config',
    # Artifact I/O.
    'load_attributions': 'tfx_explain.artifacts.tables',
    'load_maps': 'tfx_explain.artifacts.tables',
    'load_token_summary': 'tfx_explain.artifacts.tables',
    'load_summary': 'tfx_explain.artifacts.summary',
    'Summary': 'tfx_explain.artifacts.summary',
    # Validation checks (no TFX imports).
    'ValidationConfig': 'tfx_explain.validation.config',
    'CompletenessCheck': 'tfx_explain.validation.checks',
    'FeatureShareLimit': 'tfx_explain.validation.checks',
    'TopKFeatures': 'tfx_explain.validation.checks',
    'StabilityCheck': 'tfx_explain.validation.checks',
    'MethodAgreementCheck': 'tfx_explain.validation.checks',
    'ModelRandomizationCheck': 'tfx_explain.validation.randomization',
    'SkippedRowsLimit': 'tfx_explain.validation.checks',
    'AttributionDriftCheck': 'tfx_explain.validation.drift',
    'AttributionSkewCheck': 'tfx_explain.validation.drift',
    'FaithfulnessCheck': 'tfx_explain.validation.faithfulness',
    'TopKTokens': 'tfx_explain.validation.tokens',
    'TokenDriftCheck': 'tfx_explain.validation.tokens',
    'load_validation': 'tfx_explain.artifacts.validation',
    'PipelineStore': 'tfx_explain.review.notebook',
    # Pruning (no TFX imports).
    'PruningConfig': 'tfx_explain.pruning.core',
    'Distillation': 'tfx_explain.pruning.core',
    # TFX.
    'Attributions': 'tfx_explain.types',
    'ExplanationValidation': 'tfx_explain.types',
    'AttributionGen': 'tfx_explain.attribution_gen.component',
    'ExplanationValidator': 'tfx_explain.explanation_validator.component',
    'LatestBlessedAttributionsStrategy': 'tfx_explain.resolvers',
    'latest_blessed_attributions': 'tfx_explain.resolvers',
    'PrunedModelTrainer': 'tfx_explain.pruned_model_trainer.component',
}

# Submodules reachable as attributes: tfx_explain.plots.beeswarm(...).
_SUBMODULES = {'artifacts': 'tfx_explain.artifacts', 'notebook': 'tfx_explain.review.notebook',
               'plots': 'tfx_explain.review.plots', 'reports': 'tfx_explain.review.reports'}

_ENGINE = 'tfx_explain.engine'


def _all_names():
  """Everything exported; lists the engine's names, so it imports the engine (and TensorFlow)."""
  engine = importlib.import_module(_ENGINE)
  return sorted(set(_EXPORTS) | set(engine.__all__)) + list(_SUBMODULES)


def __getattr__(name):
  if name == '__all__':   # asked for by `from tfx_explain import *`
    return _all_names()
  if name in _SUBMODULES:
    value = importlib.import_module(_SUBMODULES[name])
    globals()[name] = value
    return value
  # Private and dunder names are probed by tools (IPython, pickle): never import for them.
  if name.startswith('_'):
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module = importlib.import_module(_EXPORTS.get(name, _ENGINE))
  if name not in _EXPORTS and name not in module.__all__:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(module, name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_all_names()))
