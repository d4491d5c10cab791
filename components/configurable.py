"""Small config classes that travel as JSON: attribution methods, validation checks.

A family root sets `_registry` and `kind_key`; subclasses with a `name`
register themselves. Constructor arguments are the config: each is stored on
an attribute of the same name, so `get_config` reads them back.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Dict, List, Mapping


class ConfigError(ValueError):
  """A config is invalid; the message names the culprit."""


class Configurable:
  name: ClassVar[str] = ''
  kind_key: ClassVar[str] = 'kind'
  _registry: ClassVar[Dict[str, type]]

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if cls.name:
      cls._registry[cls.name] = cls

  def get_config(self) -> Dict[str, Any]:
    params = inspect.signature(type(self).__init__).parameters
    return {p: getattr(self, p) for p in params if p != 'self'}

  def to_json_dict(self) -> Dict[str, Any]:
    return {self.kind_key: self.name, **self.get_config()}

  @classmethod
  def from_json_dict(cls, config: Mapping[str, Any]) -> 'Configurable':
    config = dict(config)
    name = config.pop(cls.kind_key, None)
    if name not in cls._registry:
      raise ConfigError(f'Unknown {cls.kind_key} {name!r}; known: {sorted(cls._registry)}.')
    target = cls._registry[name]
    params = set(inspect.signature(target.__init__).parameters) - {'self'}
    unknown = sorted(set(config) - params)
    if unknown:
      raise ConfigError(f'Unknown option(s) {unknown} for {target.__name__}; '
                        f'valid options: {sorted(params)}.')
    return target(**config)

  @classmethod
  def known(cls) -> List[str]:
    return sorted(cls._registry)

  def __repr__(self):
    args = ', '.join(f'{k}={v!r}' for k, v in self.get_config().items())
    return f'{type(self).__name__}({args})'

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()

  __hash__ = None
