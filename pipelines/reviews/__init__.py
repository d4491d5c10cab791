"""The reviews example pipeline: TFX's imdb example on a generated corpus, word attributions."""
