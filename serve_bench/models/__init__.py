"""Resolving models: the bundled default, local checkpoints, hub ids."""
