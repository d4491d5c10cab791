"""The penguin example pipeline (Palmer penguins data, CC0)."""
