"""An example of a job type and a Worker command of one's own (see pyproject.toml)."""
