"""One fit as named stages, the run folder, and the progress events."""
