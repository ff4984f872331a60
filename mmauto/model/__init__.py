"""The search space and the model: the hypermodel, shared layers, auxiliary objectives, devices."""
