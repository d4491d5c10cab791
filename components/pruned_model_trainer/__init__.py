"""PrunedModelTrainer: prune (and distil) the trained model into a standard Model."""
