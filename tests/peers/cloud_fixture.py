"""The pytest fixture of the cloud peers: `cloud_peers`, a DPS and two hubs in this process on
loopback HTTPS with a fresh test CA, stopped when the test ends. Import it into a conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.cloud import CloudPeers, start_cloud


@pytest.fixture
def cloud_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudPeers]:
    with start_cloud(tmp_path_factory.mktemp("cloud")) as cloud:
        yield cloud
