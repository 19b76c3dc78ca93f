"""pretext."""
