"""Staged output: write under `<uri>/.staging`, publish into `<uri>` only on success.

A failed run leaves nothing that looks like output, and storage refusing
writes (full, read-only, no permission) is reported the same way by every
component.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator, Optional

import tensorflow as tf

STAGING_DIR = '.staging'


class OutputWriteError(OSError):
  """The output storage refused our writes (full, read-only, no permission)."""


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)
_STORAGE_MESSAGES = ('No space left on device', 'Read-only file system', 'Permission denied',
                     'Disk quota exceeded')


def as_output_write_error(error: BaseException, uri: str) -> Optional[OutputWriteError]:
  """An OutputWriteError naming `uri` if `error` or one of its causes is storage refusing writes.

  Beam and TensorFlow wrap the OSError of a failed write in their own errors,
  so the cause chain and messages are searched.
  """
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno in _STORAGE_ERRNOS:
      reason = os.strerror(seen.errno)
      break
    reason = next((m for m in _STORAGE_MESSAGES if m in str(seen)), None)
    if reason:
      break
    seen = seen.__cause__ or seen.__context__
  else:
    return None
  return OutputWriteError(f'Cannot write the output to {uri}: {reason}. Nothing was published; '
                          'free space or make the pipeline root writable and re-run.')


def _remove(path: str) -> None:
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


def publish(staging: str, uri: str) -> None:
  """Moves everything in `staging` into `uri`, replacing what is there, and removes staging."""
  for name in tf.io.gfile.listdir(staging):
    name = name.rstrip('/')
    target = os.path.join(uri, name)
    _remove(target)
    tf.io.gfile.rename(os.path.join(staging, name), target)
  tf.io.gfile.rmtree(staging)


@contextlib.contextmanager
def staged_output(uri: str) -> Iterator[str]:
  """Yields an empty staging folder; publishes it into `uri` if the block succeeds.

  On failure the staging folder is removed, and a storage failure anywhere
  in the cause chain becomes an OutputWriteError that names `uri`.
  """
  staging = os.path.join(uri, STAGING_DIR)
  try:
    _remove(staging)
    tf.io.gfile.makedirs(staging)
  except Exception as e:  # pylint: disable=broad-except
    raise as_output_write_error(e, uri) or e
  try:
    yield staging
    publish(staging, uri)
  except Exception as e:  # pylint: disable=broad-except
    try:
      _remove(staging)
    except Exception:  # pylint: disable=broad-except
      pass   # the storage that failed the write may fail the clean-up too
    storage_error = as_output_write_error(e, uri)
    if storage_error:
      raise storage_error from e
    raise
