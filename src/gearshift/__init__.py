"""gearshift: load-driven model switching for CPU inference serving."""

__version__ = "0.1.0"
