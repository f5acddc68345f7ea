"""jtwin.distributed (being built)."""
