"""The ExplanationValidation artifact.

    <uri>/validation.json   {'blessed', 'checks': [CheckResult...], 'inputs', 'config'}
    <uri>/report.html       the same as a self-contained page
"""

from __future__ import annotations

import os
from typing import Any, Dict

import tensorflow as tf

from tfx_explain.artifacts import layout

VALIDATION_FILE = 'validation.json'
REPORT_FILE = layout.REPORT_FILE   # the same page name as an Attributions artifact's


def load_validation(artifact_or_uri) -> Dict[str, Any]:
  return layout.read_json(os.path.join(layout.uri_of(artifact_or_uri), VALIDATION_FILE))


def write_validation(uri: str, report: Dict[str, Any], report_html: str) -> None:
  tf.io.gfile.makedirs(uri)   # orchestrators differ in whether they create output folders
  layout.write_json(os.path.join(uri, VALIDATION_FILE), report)
  with tf.io.gfile.GFile(os.path.join(uri, REPORT_FILE), 'w') as f:
    f.write(report_html)
