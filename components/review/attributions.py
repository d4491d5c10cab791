"""The review surfaces of an Attributions artifact, written once its data is in place."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import tensorflow as tf

from tfx_explain.artifacts import layout
from tfx_explain.artifacts.summary import Summary
from tfx_explain.review import gallery
from tfx_explain.review import reports
from tfx_explain.review import tensorboard


def write_reviews(uri: str, splits: Sequence[str], image_spec=None,
                  split_files: Optional[Dict[str, Sequence[str]]] = None) -> Dict[str, Summary]:
  """report.html and TensorBoard events under `uri`; for image models (`image_spec`, a
  FeatureSpec, and each split's example files) the overlay galleries first."""
  summaries = {split: Summary.load(uri, split) for split in splits}
  galleries = {}
  if image_spec is not None:
    for split, summary in summaries.items():
      galleries[split] = gallery.write_gallery(uri, split, split_files[split], image_spec,
                                               summary.method_names)
  with tf.io.gfile.GFile(os.path.join(uri, layout.REPORT_FILE), 'w') as f:
    f.write(reports.attributions_report(summaries, galleries))
  tensorboard.write_summaries(uri, summaries)
  return summaries
