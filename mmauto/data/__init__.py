"""The data layer: tables in, checked splits out (tables.py, checks.py), tf.data on top (pipeline.py)."""
