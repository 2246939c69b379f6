"""cpdb revisions, oldest first."""
