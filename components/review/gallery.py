"""Overlay galleries for image attributions: one PNG per method and split."""

from __future__ import annotations

import io
import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import tables
from tfx_explain.beam.decoding import ExampleDecoder
from tfx_explain.beam.feature_spec import FeatureSpec
from tfx_explain.beam.reading import first_records

GALLERY_SIZE = 12


def first_images(files: Sequence[str], spec: FeatureSpec, count: int):
  """The first `count` examples of a split (file order), as (indices, images)."""
  records, names = first_records(sorted(files), count)
  features, _, _ = ExampleDecoder(spec).decode(records, names, need_label=False)
  return np.arange(len(records)), features[spec.model_inputs[0]]


def write_gallery(uri: str, split: str, files: Sequence[str], spec: FeatureSpec,
                  methods: List[str], count: int = GALLERY_SIZE) -> Dict[str, bytes]:
  """Writes <split>/gallery/<method>.png under `uri`; returns method -> PNG bytes."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from tfx_explain.review import plots  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  _, images = first_images(files, spec, count)
  # Only the rows and maps of the examples shown are read, never the whole split's.
  shown_rows = [frame.loc[frame['example_index'] < len(images),
                          ['method', 'example_index', 'target']]
                for frame in tables.per_example_frames(uri, split)]
  table = pd.concat(shown_rows, ignore_index=True)
  out_dir = os.path.join(layout.split_uri(uri, split), layout.GALLERY_DIR)
  tf.io.gfile.makedirs(out_dir)
  written = {}
  for method in methods:
    indices, maps = tables.load_maps(uri, split, method, below=len(images))
    position = {int(v): k for k, v in enumerate(indices)}
    shown = [i for i in range(len(images)) if i in position][:count]
    if not shown:
      continue
    targets = table[table['method'] == method].set_index('example_index')['target']
    figure = plots.image_overlays(
        images[shown], maps[[position[i] for i in shown]].astype(np.float32),
        titles=[f'#{i} class {int(targets.get(i, -1))}' for i in shown])
    figure.suptitle(f'{method} ({split} split)', fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=80)
    plt.close(figure)
    with tf.io.gfile.GFile(os.path.join(out_dir, f'{method}.png'), 'wb') as f:
      f.write(buffer.getvalue())
    written[method] = buffer.getvalue()
  return written
