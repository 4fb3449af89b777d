"""linewatch: streaming quality monitoring for production lines."""

__version__ = "0.1.0"
