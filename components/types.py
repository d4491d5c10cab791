"""Artifact types of tfx-explain.

TYPE_NAMEs are `module.ClassName` and declare no PROPERTIES: Kubeflow V2
imports the class by that name inside the container, and ML Metadata refuses
to re-register a type whose properties change. Everything we record lives in
custom properties.
"""

from tfx.types import artifact

from tfx_explain.artifacts import layout


class Attributions(artifact.Artifact):
  """Per-example and per-slice feature attributions, one folder per split."""
  TYPE_NAME = layout.ATTRIBUTIONS_TYPE_NAME


class ExplanationValidation(artifact.Artifact):
  """Results of ExplanationValidator's checks: validation.json and report.html."""
  TYPE_NAME = layout.VALIDATION_TYPE_NAME
