"""The digits example pipeline: scikit-learn's bundled 8x8 digits, a small CNN, image attributions."""
