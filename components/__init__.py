"""tfx-explain: model explanations as first-class, gated, tracked TFX steps.

    from tfx_explain import AttributionGen, AttributionConfig, IntegratedGradients

Names resolve lazily, so the explanation engine (`tfx_explain.engine`) can be
used from a notebook without importing TFX.
"""

import importlib
import os

# TFMA, tfmot and our components need Keras 2; it must be chosen before
# TensorFlow is first imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

__version__ = '0.1.0'

_EXPORTS = {
    # Engine (no TFX imports).
    'IntegratedGradients': 'tfx_explain.engine.gradients',
    'SmoothGrad': 'tfx_explain.engine.gradients',
    'GradientTimesInput': 'tfx_explain.engine.gradients',
    'VanillaGradients': 'tfx_explain.engine.gradients',
    'KernelShap': 'tfx_explain.engine.shapley',
    'SampledShapley': 'tfx_explain.engine.shapley',
    'Lime': 'tfx_explain.engine.lime',
    'PermutationImportance': 'tfx_explain.engine.permutation',
    'AttributionResult': 'tfx_explain.engine.base',
    'ReferenceStats': 'tfx_explain.engine.reference',
    'load_model_function': 'tfx_explain.engine.loading',
    'explain': 'tfx_explain.engine.explain',
    'GradCam': 'tfx_explain.engine.image',
    'ImageIntegratedGradients': 'tfx_explain.engine.image',
    'ImageSmoothGrad': 'tfx_explain.engine.image',
    'ImageGradientTimesInput': 'tfx_explain.engine.image',
    'explain_images': 'tfx_explain.engine.image',
    'AttributionConfig': 'tfx_explain.config',
    # Artifact I/O.
    'load_attributions': 'tfx_explain.artifacts.tables',
    'load_maps': 'tfx_explain.artifacts.tables',
    'load_summary': 'tfx_explain.artifacts.summary',
    'Summary': 'tfx_explain.artifacts.summary',
    # Validation checks (no TFX imports).
    'ValidationConfig': 'tfx_explain.validation.config',
    'CompletenessCheck': 'tfx_explain.validation.checks',
    'FeatureShareLimit': 'tfx_explain.validation.checks',
    'TopKFeatures': 'tfx_explain.validation.checks',
    'StabilityCheck': 'tfx_explain.validation.checks',
    'MethodAgreementCheck': 'tfx_explain.validation.checks',
    'ModelRandomizationCheck': 'tfx_explain.validation.checks',
    'SkippedRowsLimit': 'tfx_explain.validation.checks',
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

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name):
  if name in _SUBMODULES:
    value = importlib.import_module(_SUBMODULES[name])
    globals()[name] = value
    return value
  module_name = _EXPORTS.get(name)
  if module_name is None:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(module_name), name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(list(globals()) + __all__)
