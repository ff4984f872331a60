"""The search space and the model: the hypermodel, shared layers, auxiliary objectives, the ensemble
model, the embedding sub-model the export serves, devices."""
