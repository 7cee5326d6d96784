"""Mixing the curated documents in tokens at target domain ratios."""
