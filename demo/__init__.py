"""The end-to-end quickstart: `avlearn demo` (and `avlearn web`, the browser page)."""
