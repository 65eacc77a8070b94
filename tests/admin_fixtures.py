"""Fixtures for the admin area: accounts and signed-in clients."""
