"""The base of our executors that run Beam: TFX's, without packaging for local runners."""

from __future__ import annotations

import copy
from typing import List

from tfx.dsl.components.base import base_beam_executor


def runs_in_this_environment(beam_pipeline_args: List[str]) -> bool:
  """Whether Beam runs here with the DirectRunner (the default), whose workers share this Python."""
  from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions  # pylint: disable=g-import-not-at-top
  runner = PipelineOptions(list(beam_pipeline_args)).view_as(StandardOptions).runner
  if runner is None:
    return True
  name = runner if isinstance(runner, str) else type(runner).__name__
  return name.rsplit('.', 1)[-1].lower() in ('directrunner', 'direct')


class BeamExecutor(base_beam_executor.BaseBeamExecutor):
  """BaseBeamExecutor that skips TFX's packaging of its own source for local runners."""

  def __init__(self, context=None):
    args = list(getattr(context, 'beam_pipeline_args', None) or [])
    if args and runs_in_this_environment(args):
      # Given Beam arguments, TFX copies its own installed source into an sdist
      # for remote workers to install: seconds per run, of no use when the
      # workers run in this environment.
      local = copy.copy(context)
      local.beam_pipeline_args = []
      super().__init__(local)
      self._beam_pipeline_args = args
    else:
      super().__init__(context)
