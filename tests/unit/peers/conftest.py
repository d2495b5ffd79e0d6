"""The cloud peers' fixture for their own tests (until tests/conftest.py imports it for all)."""

from tests.peers.cloud_fixture import cloud_peers  # noqa: F401 (a fixture, found by name)
