"""Model side: CLIP backbones, temporal heads, frozen classifiers, text encoders."""
