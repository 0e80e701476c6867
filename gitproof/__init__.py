"""gitproof: signed GPU-test receipts stored as git notes.

PYTEST_DONT_REWRITE: the package is imported before pytest starts (by
`git gpu-proof run`), and it holds no test assertions to rewrite.
"""

__version__ = "0.3.0"
