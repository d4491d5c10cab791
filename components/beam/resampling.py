"""Bootstrap sums of a large per-example table with Beam (the validator's statistics).

    per_example/*.parquet --ReadFromParquetBatched--> Arrow batches
      --accumulate--> ((method, slice), ResampledSums) --CombinePerKey(merge)--> one per key

The weights depend on the example index only (tfx_explain.artifacts.resampling),
so this gives the same sums as the in-process loop, on any runner.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Callable, Dict, Optional, Tuple

import apache_beam as beam

from tfx_explain.artifacts import layout
from tfx_explain.artifacts import resampling


def _accumulate(batch, plan: resampling.ResamplingPlan):
  return list(resampling.accumulate(plan, batch.to_pandas()).items())


class ResampleTable(beam.PTransform):
  """((method, slice), ResampledSums) of one split's per-example table."""

  def __init__(self, uri: str, split: str, plan: resampling.ResamplingPlan):
    super().__init__()
    self._pattern = os.path.join(layout.existing_split_dir(uri, split), layout.PER_EXAMPLE_DIR,
                                 '*.parquet')
    self._plan = plan

  def expand(self, pipeline):
    return (pipeline
            | 'Read' >> beam.io.ReadFromParquetBatched(self._pattern)
            | 'Accumulate' >> beam.FlatMap(_accumulate, self._plan)
            | 'Merge' >> beam.CombinePerKey(resampling.merge_all))


def resample_view_with_beam(make_pipeline, view, plan, tmp_dir: Optional[str] = None):
  """CheckContext.resample_large for the executor: a view's table through Beam."""
  return resample_with_beam(make_pipeline, view.uri, view.split, plan, tmp_dir)


def resample_with_beam(make_pipeline: Callable[[], beam.Pipeline], uri: str, split: str,
                       plan: resampling.ResamplingPlan, tmp_dir: Optional[str] = None
                       ) -> Dict[Tuple[str, str], resampling.ResampledSums]:
  """Runs ResampleTable on the given pipeline and reads its (small) result back.

  The result goes through files under tmp_dir (the executor's temporary folder,
  which remote workers can reach), one record per key.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  folder = os.path.join(tmp_dir, f'resampled-{uuid.uuid4().hex}') if tmp_dir else \
      tempfile.mkdtemp(prefix='resampled-')
  prefix = os.path.join(folder, 'sums')
  with make_pipeline() as pipeline:
    _ = (pipeline
         | 'Resample' >> ResampleTable(uri, split, plan)
         | 'Encode' >> beam.MapTuple(resampling.encode_sums)
         | 'Write' >> beam.io.WriteToTFRecord(prefix))
  sums = {}
  for path in tf.io.gfile.glob(prefix + '*'):
    for record in tf.compat.v1.io.tf_record_iterator(path):
      key, value = resampling.decode_sums(record)
      sums[key] = value
  tf.io.gfile.rmtree(folder)
  return sums
