"""Video data: annotations, decoders, sampling, transforms, datasets."""
