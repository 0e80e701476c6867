"""The ``git gpu-proof`` command line: a thin layer over the library."""
