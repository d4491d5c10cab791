"""Explanation checks and the ValidationConfig that ExplanationValidator runs (no TFX imports)."""
