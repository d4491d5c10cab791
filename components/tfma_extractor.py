"""An attribution extractor for TFMA, so the stock Evaluator computes attribution metrics.

TFMA 0.47 has attribution metrics (TotalAttributions, MeanAttributions,
MeanAbsoluteAttributions, ...) but no extractor that produces per-example
attributions. Point Evaluator at this module and add the metrics:

    evaluator = tfx.components.Evaluator(
        examples=..., model=...,
        eval_config=tfma.EvalConfig(..., metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name='MeanAbsoluteAttributions'), ...])]),
        module_path='tfx_explain.tfma_extractor')

`custom_extractors` returns TFMA's default extractors plus ours (placed before
slicing, where TFMA's metrics run), which runs the tfx-explain engine on each
batch of features and stores the attributions under extracts['attributions'].
The default is Integrated Gradients, 32 trapezoid points, zeros baseline: the
extractor sees only the batch being evaluated, which can be a single example,
so a data-derived baseline needs reference statistics. Write your own module
with `make_custom_extractors(method, reference_json)` — e.g. an Attributions
artifact's reference.json, for 'mean'/'median' baselines and Kernel SHAP.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import apache_beam as beam
import numpy as np

ATTRIBUTIONS_KEY = 'attributions'
FEATURES_KEY = 'features'


class _AttributeExtractsFn(beam.DoFn):
  def __init__(self, model_path: str, method_json: Dict[str, Any],
               reference_json: Optional[str] = None):
    self._model_path = model_path
    self._method_json = method_json
    self._reference_json = reference_json
    self._model = None
    self._method = None
    self._reference = None

  def setup(self):
    from tfx_explain.engine.base import AttributionMethod  # pylint: disable=g-import-not-at-top
    from tfx_explain.engine.loading import load_model_function  # pylint: disable=g-import-not-at-top
    from tfx_explain.engine.reference import ReferenceStats  # pylint: disable=g-import-not-at-top
    self._model = load_model_function(self._model_path)
    self._method = AttributionMethod.from_json_dict(self._method_json)
    if self._reference_json:
      self._reference = ReferenceStats.from_json(self._reference_json)

  def process(self, extracts):
    features = extracts[FEATURES_KEY]
    columns = {}
    for name in self._model.input_names:
      if name not in features:
        raise ValueError(f'Model input {name!r} is not among the evaluated features '
                         f'({sorted(features)}).')
      values = features[name]
      columns[name] = np.asarray([v[0] if isinstance(v, (list, np.ndarray)) and np.size(v) else v
                                  for v in values] if isinstance(values, list) else values)
      columns[name] = columns[name].reshape(len(columns[name]), -1)[:, 0]
    if self._reference is None and self._method.requires_background:
      raise ValueError(f'{type(self._method).__name__} needs reference statistics: pass '
                       'reference_json to make_custom_extractors.')
    result = self._method.attribute(self._model, columns, self._reference)
    out = dict(extracts)
    out[ATTRIBUTIONS_KEY] = {
        name: result.attributions[:, j] for j, name in enumerate(result.feature_names)
        if not np.isnan(result.attributions[:, j]).any()}
    yield out


def attribution_extractor(model_path: str, method=None, reference_json: Optional[str] = None):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  from tfx_explain.engine.gradients import IntegratedGradients  # pylint: disable=g-import-not-at-top
  method = method or IntegratedGradients(steps=32, baseline='zeros')
  return tfma.extractors.Extractor(
      stage_name='ExtractTfxExplainAttributions',
      ptransform=beam.ParDo(_AttributeExtractsFn(model_path, method.to_json_dict(),
                                                 reference_json)))


def make_custom_extractors(method=None, reference_json: Optional[str] = None):
  """A `custom_extractors` function for an Evaluator module, with the method of your choice."""

  def custom_extractors(eval_shared_model, eval_config, tensor_adapter_config) -> List[Any]:
    import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
    models = eval_shared_model if isinstance(eval_shared_model, list) else [eval_shared_model]
    candidate = [m for m in models if not getattr(m, 'is_baseline', False)][0]
    extractors = tfma.default_extractors(eval_shared_model=eval_shared_model,
                                         eval_config=eval_config,
                                         tensor_adapter_config=tensor_adapter_config)
    ours = attribution_extractor(_model_dir(candidate.model_path), method, reference_json)
    # Metrics run right after the slice-key stage: attributions must exist by then.
    slice_stages = {tfma.extractors.SLICE_KEY_EXTRACTOR_STAGE_NAME, 'ExtractSqlSliceKeys'}
    position = next((i for i, e in enumerate(extractors) if e.stage_name in slice_stages),
                    len(extractors))
    return extractors[:position] + [ours] + extractors[position:]

  return custom_extractors


def _model_dir(path: Optional[str]) -> str:
  return path if os.path.basename(path.rstrip('/')) == 'Format-Serving' or \
      not os.path.isdir(os.path.join(path, 'Format-Serving')) else os.path.join(path,
                                                                                'Format-Serving')


custom_extractors = make_custom_extractors()
