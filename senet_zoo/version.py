"""The package version: one place, below every layer (the Hub client and the records name it)."""
__version__ = "0.1.0"
