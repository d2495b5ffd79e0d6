"""Peers of the sim board: its services (sim.py) and protocol peers used by the tests."""
