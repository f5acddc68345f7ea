import jtwin  # noqa: F401  (enables float64 before any test builds arrays)
