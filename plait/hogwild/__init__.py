"""plait.hogwild."""
