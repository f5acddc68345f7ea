"""jtwin.schedule (being built)."""
