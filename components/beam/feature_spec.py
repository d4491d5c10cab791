"""What to decode from each example, and the error bad examples raise. Picklable."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

FLOAT_KINDS = ('float16', 'float32', 'float64', 'bfloat16')


class InputDataError(ValueError):
  """Examples do not fit the model or schema; the message names file and feature."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """What to decode from each example, picklable for workers."""
  model_inputs: Tuple[str, ...]
  input_dtypes: Tuple[str, ...]          # tf dtype names, parallel to model_inputs
  label_key: Optional[str] = None
  slice_features: Tuple[str, ...] = ()
  serialized_schema: Optional[bytes] = None
  # (height, width, channels) when the model takes one image input.
  image_shape: Tuple[int, ...] = ()
  # (feature, D) for each vector feature: decoded whole, attributed as `x[0]`...`x[D-1]`.
  vectors: Tuple[Tuple[str, int], ...] = ()

  @property
  def float_inputs(self) -> List[str]:
    return [n for n, d in zip(self.model_inputs, self.input_dtypes) if d in FLOAT_KINDS]

  def dtype_of(self, name: str) -> str:
    return self.input_dtypes[self.model_inputs.index(name)]

