"""jtwin.estimation (being built)."""
