"""Package data (see SOURCE.md for origin and license)."""
