"""jtwin.control (being built)."""
