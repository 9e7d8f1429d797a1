"""Shared ground every layer may use: errors, bounded text, masking, YAML positions, ${VAR} interpolation,
the media-root judgement."""
