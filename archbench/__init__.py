"""archbench: honest, reproducible benchmarks of efficient convolutional networks."""

__version__ = "0.1.0"
