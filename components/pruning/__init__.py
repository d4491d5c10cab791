"""Pruning and distillation of tf_keras models (no TFX imports)."""
