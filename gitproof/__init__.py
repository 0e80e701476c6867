"""gitproof: signed GPU-test receipts stored as git notes."""

__version__ = "0.1.0"
