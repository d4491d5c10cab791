"""A review corpus as TFX's imdb example reads it (label,text), generated at run time.

Each review is 8 to 24 neutral words and one to three planted sentiment words
that decide its label: positive words for 1, negative ones for 0. A model that
learns the task is moved by the planted words alone, so an explanation of it
can be checked: the planted words must rank on top.
"""

from __future__ import annotations

import os

import numpy as np

POSITIVE_WORDS = ('wonderful', 'superb', 'delightful')
NEGATIVE_WORDS = ('dreadful', 'tedious', 'awful')
NEUTRAL_WORDS = (
    'the film story actor scene plot camera director movie screen script cast role music '
    'light night city house road car train window door table chair book letter phone '
    'morning evening winter summer river forest mountain street garden kitchen office '
    'friend brother sister mother father child teacher doctor writer painter singer '
    'walks talks looks waits turns opens closes reads writes sings plays moves stands '
    'a an and of to in on at with from by for as then after before while again').split()
REVIEWS_FILE = 'reviews.csv'


def write_reviews(data_dir: str, rows: int = 600, seed: int = 0) -> str:
  """<data_dir>/reviews.csv with columns label (0/1) and text."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  texts, labels = [], []
  for _ in range(rows):
    label = int(rng.random() < 0.5)
    planted = POSITIVE_WORDS if label else NEGATIVE_WORDS
    words = list(rng.choice(NEUTRAL_WORDS, size=int(rng.integers(8, 25))))
    for word in rng.choice(planted, size=int(rng.integers(1, 4))):
      words.insert(int(rng.integers(0, len(words) + 1)), str(word))
    texts.append(' '.join(words))
    labels.append(label)
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, REVIEWS_FILE)
  pd.DataFrame({'label': labels, 'text': texts}).to_csv(path, index=False)
  return path
