"""Safe to leave running: one run per output root, no stale temporaries (issue 15)."""
