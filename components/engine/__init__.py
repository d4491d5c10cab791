"""The explanation engine: pure TensorFlow/NumPy, no TFX imports.

One small class per method, each with the same call,
`attribute(model, features, reference=None, target='predicted', labels=None,
example_ids=None)`. A method is registered (so configs name it in JSON) by its
class being defined with a `name`; importing it here makes every method known
wherever any part of the engine is imported.
"""

from tfx_explain.engine.adapters import (CallableModelFunction, KerasModelFunction,
                                         SignatureModelFunction)
from tfx_explain.engine.base import (AttributionMethod, AttributionResult, method_classes,
                                     method_from_json_dict, resolve_targets)
from tfx_explain.engine.baselines import BaselineSpec, check_baseline, image_baselines
from tfx_explain.engine.explain import explain
from tfx_explain.engine.gradients import (ExpectedGradients, GradientTimesInput,
                                          IntegratedGradients, SmoothGrad, VanillaGradients)
from tfx_explain.engine.image import (GradCam, ImageAttribution, ImageGradientTimesInput,
                                      ImageIntegratedGradients, ImageSmoothGrad, explain_images)
from tfx_explain.engine.image_model import FlatImageModel, ImageModel
from tfx_explain.engine.lime import Lime
from tfx_explain.engine.loading import load_model_function
from tfx_explain.engine.model import ModelAccessError, ModelFunction
from tfx_explain.engine.permutation import PermutationImportance
from tfx_explain.engine.reference import ReferenceStats
from tfx_explain.engine.shapley import KernelShap, SampledShapley
from tfx_explain.engine.text import (TokenAttribution, TokenExpectedGradients,
                                     TokenIntegratedGradients, TokenShap)
from tfx_explain.engine.tree_shap import TreeShap
from tfx_explain.engine.forest_model import ForestModelFunction

__all__ = [
    # Methods.
    'ExpectedGradients', 'GradCam', 'GradientTimesInput', 'ImageGradientTimesInput', 'ImageIntegratedGradients',
    'ImageSmoothGrad', 'IntegratedGradients', 'KernelShap', 'Lime', 'PermutationImportance',
    'SampledShapley', 'SmoothGrad', 'TokenExpectedGradients', 'TokenIntegratedGradients',
    'TokenShap', 'TreeShap', 'VanillaGradients',
    # Running them.
    'AttributionMethod', 'AttributionResult', 'ImageAttribution', 'ReferenceStats',
    'TokenAttribution',
    'explain', 'explain_images', 'method_classes', 'method_from_json_dict', 'resolve_targets',
    'BaselineSpec', 'check_baseline', 'image_baselines',
    # Models.
    'load_model_function', 'ModelFunction', 'ModelAccessError', 'KerasModelFunction',
    'SignatureModelFunction', 'CallableModelFunction', 'ImageModel', 'FlatImageModel',
    'ForestModelFunction',
]
