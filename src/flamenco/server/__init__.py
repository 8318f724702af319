"""The Server: the farm's source of truth for jobs, tasks, frames, users and Managers."""
