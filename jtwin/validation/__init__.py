"""jtwin.validation (being built)."""
