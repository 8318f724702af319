"""The Manager: one per network; leases tasks from the Server and runs them on its Workers."""
