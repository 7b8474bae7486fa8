"""plait.eval."""
