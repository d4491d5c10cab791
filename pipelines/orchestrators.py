"""The local orchestrators the example pipelines run on, chosen by name.

    local   TFX's LocalDagRunner: components one after another in this process
    beam    TFX's BeamDagRunner: the pipeline's DAG is itself a Beam pipeline
            (DirectRunner here), each component a step of it; components'
            own Beam work still follows their beam_pipeline_args

Both read and write the same ML Metadata store, so runs of either share
baselines.
"""

from __future__ import annotations

ORCHESTRATORS = ('local', 'beam')


def runner(name: str):
  """A TFX runner for `name` (one of ORCHESTRATORS)."""
  if name == 'local':
    from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
    return tfx.orchestration.LocalDagRunner()
  if name == 'beam':
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner  # pylint: disable=g-import-not-at-top
    return BeamDagRunner()
  raise ValueError(f'orchestrator must be one of {list(ORCHESTRATORS)}, got {name!r}.')


def add_argument(parser) -> None:
  parser.add_argument('--orchestrator', choices=ORCHESTRATORS, default='local',
                      help='local: LocalDagRunner (default); beam: BeamDagRunner')
