"""collections: the operator CLI for the collections image pipeline."""

__version__ = "0.1.0"
