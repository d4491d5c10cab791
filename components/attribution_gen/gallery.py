"""Overlay galleries for image attributions: one PNG per method and split."""

from __future__ import annotations

import io
import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf

from tfx_explain import artifact_io
from tfx_explain.beam import attribution_transforms as transforms

GALLERY_SIZE = 12


def first_images(files: Sequence[str], spec: transforms.FeatureSpec, count: int):
  """The first `count` examples of a split (file order), as (indices, images)."""
  decoder = transforms.ExampleDecoder(spec)
  records, names = [], []
  for path in sorted(files):
    for record in transforms._records(path):  # pylint: disable=protected-access
      records.append(record)
      names.append(path)
      if len(records) >= count:
        break
    if len(records) >= count:
      break
  features, _, _ = decoder.decode(records, names, need_label=False)
  return np.arange(len(records)), features[spec.model_inputs[0]]


def write_gallery(split_dir: str, files: Sequence[str], spec: transforms.FeatureSpec,
                  methods: List[str], summary, count: int = GALLERY_SIZE) -> List[str]:
  from tfx_explain import plots  # pylint: disable=g-import-not-at-top
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  staging, split_name = os.path.split(split_dir.rstrip('/'))
  split = split_name[len('Split-'):]
  _, images = first_images(files, spec, count)
  table = artifact_io.load_attributions(staging, split)
  out_dir = os.path.join(split_dir, artifact_io.GALLERY_DIR)
  tf.io.gfile.makedirs(out_dir)
  written = []
  for method in methods:
    indices, maps = artifact_io.load_maps(staging, split, method)
    position = {int(v): k for k, v in enumerate(indices)}
    shown = [i for i in range(len(images)) if i in position][:count]
    if not shown:
      continue
    targets = table[table['method'] == method].set_index('example_index')['target']
    figure = plots.image_overlays(
        images[shown], maps[[position[i] for i in shown]].astype(np.float32),
        titles=[f'#{i} class {int(targets.get(i, -1))}' for i in shown])
    figure.suptitle(f'{method} ({summary["split"]} split)', fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=80)
    plt.close(figure)
    path = os.path.join(out_dir, f'{method}.png')
    with tf.io.gfile.GFile(path, 'wb') as f:
      f.write(buffer.getvalue())
    written.append(path)
  return written
