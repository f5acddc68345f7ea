"""jtwin.drift (being built)."""
