"""TensorBoard summaries of an Attributions artifact: `tensorboard --logdir <uri>/tensorboard`.

Per split and method: a histogram of per-example attributions for each
feature (from up to MAX_ROWS rows, so a huge split is never loaded whole),
mean |attribution| scalars, and for image models the overlay gallery images.
"""

from __future__ import annotations

import os
from typing import Dict

import numpy as np
import tensorflow as tf

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
from tfx_explain.artifacts.summary import Summary

MAX_ROWS = 20000


def _sample_rows(uri: str, split: str):
  """The first MAX_ROWS per-example rows, reading Parquet shards one at a time."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  frames, total = [], 0
  for frame in tables.per_example_frames(uri, split):
    frames.append(frame)
    total += len(frame)
    if total >= MAX_ROWS:
      break
  return pd.concat(frames, ignore_index=True).head(MAX_ROWS) if frames else None


def write_summaries(uri: str, summaries: Dict[str, Summary]) -> str:
  # Histograms and scalars are built as Summary protos with TensorBoard's own
  # numpy code (the same buckets as tf.summary.histogram) and written in one
  # op: one eager summary op per feature cost seconds with 100 features.
  from tensorboard.plugins.histogram import summary_v2 as histogram_summary  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.scalar import summary_v2 as scalar_summary  # pylint: disable=g-import-not-at-top
  logdir = os.path.join(uri, layout.TENSORBOARD_DIR)
  for split, summary in summaries.items():
    writer = tf.summary.create_file_writer(os.path.join(logdir, split))
    rows = _sample_rows(uri, split)
    protos = []
    for method, values in summary.overall.methods.items():
      for feature, value in sorted(values.mean_absolute_attribution.items()):
        protos.append(scalar_summary.scalar_pb(f'{method}/mean_abs_attribution/{feature}',
                                               np.float32(value)))
      if rows is None:
        continue
      part = rows[rows['method'] == method]
      for feature in tables.feature_columns(part):
        column = part[feature].dropna().values.astype(np.float64)
        if len(column):
          protos.append(histogram_summary.histogram_pb(f'{method}/{feature}', column))
    with writer.as_default():
      if protos:
        tf.summary.experimental.write_raw_pb(
            tf.constant([p.SerializeToString() for p in protos]), step=0)
      gallery = os.path.join(layout.split_uri(uri, split), layout.GALLERY_DIR)
      for path in sorted(tf.io.gfile.glob(os.path.join(gallery, '*.png'))):
        image = tf.image.decode_png(tf.io.read_file(path), channels=3)
        tf.summary.image(f'{os.path.basename(path)[:-4]}/overlays', image[None], step=0)
    writer.close()
  return logdir
