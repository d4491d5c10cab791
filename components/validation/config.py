"""ValidationConfig: which checks ExplanationValidator runs, serialisable to JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

from tfx_explain.configurable import ConfigError, dataclass_fields_from_json
from tfx_explain.validation.checks import Check
# Checks register by name when their module is imported: every module defining
# checks is imported here, so from_json finds them in any process.
from tfx_explain.validation import drift
from tfx_explain.validation import faithfulness
from tfx_explain.validation import randomization
from tfx_explain.validation import tokens
from tfx_explain.validators import check_int

CHECK_MODULES = (drift, faithfulness, randomization, tokens)


@dataclasses.dataclass
class ValidationConfig:
  """Attributes:
    checks: check instances, e.g. [CompletenessCheck(), FeatureShareLimit('sex', 0.1)].
    split: the attributions split to validate.
    require_model_blessing: when a model_blessing input is given, a NOT_BLESSED
      one makes our blessing NOT_BLESSED too.
    estimator_draws: for sampling estimators, how many estimator draws each
      importance-based verdict is re-taken on (0: not re-taken); see
      tfx_explain.validation.verdicts.
    seed: seed of those draws.
  """
  checks: Sequence[Check] = dataclasses.field(default_factory=list)
  split: str = 'eval'
  require_model_blessing: bool = True
  estimator_draws: int = 20
  seed: int = 0

  def __post_init__(self):
    self.checks = list(self.checks)
    if not self.checks:
      raise ConfigError('ValidationConfig: checks is empty; give at least one check.')
    for check in self.checks:
      if not isinstance(check, Check):
        raise ConfigError(f'ValidationConfig: checks must be check instances such as '
                          f'CompletenessCheck(), got {check!r}.')
    if not isinstance(self.split, str) or not self.split:
      raise ConfigError(f'ValidationConfig: split must be a split name, got {self.split!r}.')
    self.estimator_draws = check_int('ValidationConfig', 'estimator_draws',
                                     self.estimator_draws, minimum=0)
    self.seed = check_int('ValidationConfig', 'seed', self.seed, minimum=0)

  def to_json(self) -> str:
    return json.dumps({'checks': [c.to_json_dict() for c in self.checks], 'split': self.split,
                       'require_model_blessing': self.require_model_blessing,
                       'estimator_draws': self.estimator_draws, 'seed': self.seed},
                      sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'ValidationConfig':
    data = dataclass_fields_from_json(cls, text)
    data['checks'] = [Check.from_json_dict(c) for c in data.get('checks', [])]
    return cls(**data)
