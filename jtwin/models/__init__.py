"""jtwin.models."""
