"""Consensus: pure state machines that decide blocks; time and messages come in as arguments."""
