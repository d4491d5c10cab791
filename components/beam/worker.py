"""What every Beam worker process sets up before it first runs TensorFlow."""

from __future__ import annotations

from typing import Optional

from absl import logging


def set_tf_threads(threads: Optional[int]) -> bool:
  """Limits TensorFlow in this process to `threads` intra-op and `threads` inter-op threads.

  By default each process's TensorFlow uses every core, so N worker processes
  on N cores run N times as many threads as there are cores and slow each
  other down. TensorFlow fixes its thread pools when its runtime starts in a
  process (at the first op or model load), so this must run before that; in a
  process whose runtime already runs (the orchestrator's, when an earlier
  component used TensorFlow there), it is logged and left as it is.

  Returns whether TensorFlow in this process uses `threads` (True for None,
  which keeps TensorFlow's default).
  """
  if threads is None:
    return True
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:
    logging.warning('TensorFlow already runs in process %s with its own thread pools; '
                    'tf_threads_per_worker=%d applies to the worker processes that start '
                    'TensorFlow after it is set.', _pid(), threads)
    return False
  return True


def _pid() -> int:
  import os  # pylint: disable=g-import-not-at-top
  return os.getpid()
