"""The explanation engine: pure TensorFlow/NumPy, no TFX imports.

One small class per method, each with `attribute(model, features, ...)`.
"""
