"""HTTP routes: one small module per group, each a thin layer over `InferenceService`."""
