"""The `flamenco` command line."""
