"""What checks read: one split of an Attributions artifact, its baseline and the model."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
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

  def reference(self):
    return tables.load_reference(self.uri)

  def attribution_config(self) -> Dict[str, Any]:
    return layout.load_attribution_config(self.uri)


@dataclasses.dataclass
class CheckContext:
  current: AttributionsView
  baseline: Optional[AttributionsView] = None
  model_path: Optional[str] = None
  transform_graph: Optional[str] = None

  def load_model(self):
    """The model as AttributionGen explained it (same signature, head and Transform), unshared."""
    from tfx_explain.config import AttributionConfig  # pylint: disable=g-import-not-at-top
    config = AttributionConfig.from_json(json.dumps(self.current.attribution_config()))
    return config.load_model(self.model_path, self.transform_graph)
