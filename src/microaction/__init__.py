"""microaction: micro-action recognition on MA-52 with MANet and its baselines."""

__version__ = "0.1.0"
