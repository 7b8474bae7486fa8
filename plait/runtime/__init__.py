"""plait.runtime."""
