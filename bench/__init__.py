"""Benchmarks (run as scripts; a package only so that .importlinter can check what they import)."""
