"""Bundled real data (a slice of E. coli K-12) used by defaults and tests."""
