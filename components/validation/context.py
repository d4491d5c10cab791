"""What checks read: one split of an Attributions artifact, its baseline and the model."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import resampling
from tfx_explain.artifacts import tables
from tfx_explain.configurable import ConfigError
from tfx_explain.artifacts.summary import Summary


class AttributionsView:
  """What checks read of one split of an Attributions artifact: its Summary and files."""

  def __init__(self, uri: str, split: str = 'eval', properties: Optional[Dict[str, Any]] = None):
    self.uri = uri
    self.split = split
    self.summary = Summary.load(uri, split)
    self.properties = properties or {}

  @property
  def features(self) -> List[str]:
    return list(self.summary.features)

  @property
  def methods(self) -> List[str]:
    return self.summary.method_names

  @property
  def slices(self) -> List[str]:
    return self.summary.slice_names

  def importance(self, method: str, slice_name: str = 'Overall') -> Dict[str, float]:
    return self.summary.importance(method, slice_name)

  def method_config(self, method: str) -> Dict[str, Any]:
    return dict(self.summary.methods[method].config)

  def token_methods(self) -> List[str]:
    """Methods whose per-word summaries the split has (token methods)."""
    if not self.summary.token_summary:
      return []
    return sorted(set(self._token_frame()['method']))

  def token_importance(self, method: str, slice_name: str = 'Overall',
                       min_count: int = 1) -> Dict[str, float]:
    """Word -> mean |score| of a token method on a slice, words seen min_count times."""
    return tables.word_importance(self._token_frame(), method, slice_name, min_count)

  def _token_frame(self):
    if getattr(self, '_tokens', None) is None:
      self._tokens = tables.load_token_summary(self.uri, self.split)
    return self._tokens

  def reference(self):
    return tables.load_reference(self.uri)

  def attribution_config(self) -> Dict[str, Any]:
    return layout.load_attribution_config(self.uri)


# Tables of at least this many rows (examples x methods) are resampled with
# `resample_large` (Beam, in the executor) when the context has it.
BEAM_MIN_ROWS = 200_000


@dataclasses.dataclass
class CheckContext:
  """current: the validated split; baseline: the last blessed model's, when there is one.

  resample_large: (view, plan) -> sums, for statistics over large tables; the
  executor gives one that runs Beam on the component's beam_pipeline_args
  (tfx_explain.beam.resampling). Checks import no Beam themselves.
  """
  current: AttributionsView
  baseline: Optional[AttributionsView] = None
  model_path: Optional[str] = None
  transform_graph: Optional[str] = None
  resample_large: Optional[Callable[[AttributionsView, Any], Any]] = None

  def available_splits(self) -> List[str]:
    return layout.available_splits(self.current.uri)

  def split_view(self, split: str) -> Optional[AttributionsView]:
    """Another split of the current attributions (the training split, for skew)."""
    if split not in self.available_splits():
      return None
    return AttributionsView(self.current.uri, split, self.current.properties)

  def value_ranges(self, view: AttributionsView, features: Mapping[str, Sequence[str]]):
    return resampling.value_ranges(tables.per_example_frames(view.uri, view.split), features)

  def resampled_sums(self, view: AttributionsView, plan, use_beam: Optional[bool] = None):
    """Bootstrap and estimator-draw sums of a view's table; with Beam for large tables."""
    if use_beam is None:
      rows = view.summary.examples * len(plan.features)
      use_beam = self.resample_large is not None and rows >= BEAM_MIN_ROWS
    if use_beam:
      if self.resample_large is None:
        raise ConfigError('use_beam=True needs a Beam pipeline: run the check in '
                          'ExplanationValidator (or give the context resample_large).')
      return self.resample_large(view, plan)
    return resampling.accumulate_frames(plan, tables.per_example_frames(view.uri, view.split))

  def load_model(self):
    """The model as AttributionGen explained it (same signature, head and Transform), unshared."""
    from tfx_explain.config import AttributionConfig  # pylint: disable=g-import-not-at-top
    config = AttributionConfig.from_json(json.dumps(self.current.attribution_config()))
    return config.load_model(self.model_path, self.transform_graph)
