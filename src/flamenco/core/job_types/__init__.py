"""The built-in job types, one a module, each registered as a `flamenco.job_types` entry point
in pyproject.toml like a studio's own (`flamenco/job_type_registry.py` finds them)."""
