"""Checks of config values, shared by every config class (no TensorFlow, TFX or Beam).

Each returns the value it accepted and otherwise raises a ConfigError that names
the owner (the class being configured) and the option.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

from tfx_explain.configurable import ConfigError


def check_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
  """An integer (NumPy's included, bool excluded) of at least `minimum`."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ConfigError(f'{owner}: {name} must be an integer >= {minimum}, got {value!r}.')
  return int(value)


def check_number(owner: str, name: str, value: Any, low: Optional[float] = None,
                 high: Optional[float] = None, low_open: bool = False,
                 high_open: bool = False) -> float:
  """A finite real number within the bounds given; `*_open` excludes that bound itself."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
      not math.isfinite(value):
    raise ConfigError(f'{owner}: {name} must be a number, got {value!r}.')
  below = low is not None and (value < low or (low_open and value == low))
  above = high is not None and (value > high or (high_open and value == high))
  if below or above:
    if low is not None and high is not None:
      bounds = f'in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    elif low is not None:
      bounds = f'a number {">" if low_open else ">="} {low}'
    else:
      bounds = f'a number {"<" if high_open else "<="} {high}'
    raise ConfigError(f'{owner}: {name} must be {bounds}, got {value!r}.')
  return float(value)


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
  if value not in choices:
    raise ConfigError(f'{owner}: {name} must be one of {list(choices)}, got {value!r}.')
  return value
