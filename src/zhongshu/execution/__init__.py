"""Deterministic transaction execution over versioned key-value state."""
