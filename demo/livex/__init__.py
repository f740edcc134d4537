"""livex: live functions, live types and live data driving a job queue across reloads."""
