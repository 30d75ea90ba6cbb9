"""Data: the official layout (annotations, layout, manifest), video files (video), frame sampling, transforms,
datasets and datamodules, the release's cache (prepare) and synthetic dataset writers (synthetic)."""
