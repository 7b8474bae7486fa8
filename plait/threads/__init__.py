"""plait.threads."""
