"""Predictions and embeddings through the exported SavedModel, metrics (scikit-learn) and the ablation."""
