"""AttributionGen: feature attributions over example splits, with Beam."""
