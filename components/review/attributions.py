"""The review surfaces of an Attributions artifact, written once its data is in place."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import tensorflow as tf

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
from tfx_explain.artifacts.summary import Summary
from tfx_explain.review import gallery
from tfx_explain.review import reports
from tfx_explain.review import tensorboard


def text_review(uri: str, split: str, examples: int = 8, words: int = 12,
                min_count: int = 2):
  """What the report shows of a text model's split: ({method: {slice: [(word, mean |score|,
  occurrences)]}}, {method: [(example_index, prediction, words, scores)]}) for the first
  `examples` examples (by index) of each token method."""
  summary = tables.load_token_summary(uri, split)
  summary = summary[summary['count'] >= min_count]
  top = {}
  # The summary is written ranked: within a slice and method, by mean |score|.
  for (method, slice_name), rows in summary.groupby(['method', 'slice'], sort=False):
    top.setdefault(method, {})[slice_name] = list(zip(
        rows['token'][:words], rows['mean_absolute_attribution'][:words].astype(float),
        rows['count'][:words].astype(int)))
  for method in top:   # Overall first
    top[method] = dict(sorted(top[method].items(), key=lambda kv: kv[0] != 'Overall'))
  shown: Dict[str, list] = {}
  for frame in tables.per_example_frames(uri, split):
    frame = frame[frame[tables.TOKENS_COLUMN].notna()]
    for method, rows in frame.groupby('method', sort=False):
      rows = rows.nsmallest(examples, 'example_index')
      for row in rows.itertuples(index=False):
        shown.setdefault(method, []).append(
            (row.example_index, row.prediction, list(getattr(row, tables.TOKENS_COLUMN)),
             [float(s) for s in getattr(row, tables.TOKEN_SCORES_COLUMN)]))
      # One row group at a time: keep only the lowest indices seen so far.
      shown[method] = sorted(shown[method], key=lambda r: r[0])[:examples]
  return top, shown


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
  texts = {split: text_review(uri, split) for split, summary in summaries.items()
           if summary.token_summary}
  with tf.io.gfile.GFile(os.path.join(uri, layout.REPORT_FILE), 'w') as f:
    f.write(reports.attributions_report(summaries, galleries, texts))
  tensorboard.write_summaries(uri, summaries)
  return summaries
