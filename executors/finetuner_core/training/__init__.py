"""Training: samplers, losses and miners, the loop with its callbacks, and the fit configuration."""
