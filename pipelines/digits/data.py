"""tf.Examples from scikit-learn's bundled 8x8 digits, written at run time (no download)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

IMAGE_KEY = 'image'
LABEL_KEY = 'label'
IMAGE_SHAPE = (8, 8, 1)


def digits_arrays():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  return digits.images.astype(np.float32), digits.target.astype(np.int64)


def write_digits_examples(directory: str, limit: int = None) -> str:
  """Writes <directory>/digits.tfrecord: 'image' (64 floats, 0-16) and 'label' (0-9)."""
  images, labels = digits_arrays()
  if limit:
    images, labels = images[:limit], labels[:limit]
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, 'digits.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for image, label in zip(images, labels):
      example = tf.train.Example(features=tf.train.Features(feature={
          IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=image.reshape(-1))),
          LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
      }))
      writer.write(example.SerializeToString(deterministic=True))
  return path
