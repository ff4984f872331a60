"""The search: keras-tuner oracles (strategy), the tuner (runner), callbacks, the leaderboard,
the frozen-feature cache and distributed workers."""
