"""Data: annotation lists, frame sampling, decoding, transforms, datasets and datamodules."""
