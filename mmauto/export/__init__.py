"""The artifact: the raw-input SavedModel, its model card and serving examples."""
