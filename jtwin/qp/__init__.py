"""jtwin.qp (being built)."""
