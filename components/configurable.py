"""Small config classes that travel as JSON: attribution methods, validation checks.

A family root sets `_registry` and `kind_key`; subclasses with a `name`
register themselves when their class is defined. So a family's package
imports all its members wherever the root is imported (the engine's
`__init__` imports every method; the checks are defined beside their root),
and looking one up by name works in any process, a Kubeflow container running
one executor included. Constructor arguments are the config: each is stored
on an attribute of the same name, so `get_config` reads them back.
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


def dataclass_fields_from_json(cls, text: str) -> Dict[str, Any]:
  """JSON text -> constructor kwargs of a config dataclass, refusing unknown keys."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f'{cls.__name__}: config is not valid JSON: {e}') from e
  if not isinstance(data, dict):
    raise ConfigError(f'{cls.__name__}: config must be a JSON object, got {type(data).__name__}.')
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - known)
  if unknown:
    raise ConfigError(f'{cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(known)}.')
  return data
