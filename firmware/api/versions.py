"""The `api-version` values the local APIs accept: those of IoT Edge's management and workload APIs.

Every request must name one (`?api-version=2022-08-03`), as with IoT Edge's edgelet. The list is
the union of the versions edgelet has published, oldest first, so a module or tool written for
any IoT Edge release finds its version here.
"""

from __future__ import annotations

SUPPORTED: tuple[str, ...] = (
    "2018-06-28",
    "2019-01-30",
    "2019-10-22",
    "2019-11-05",
    "2020-07-07",
    "2020-10-10",
    "2021-12-07",
    "2022-08-03",
)

LATEST = SUPPORTED[-1]

# What modules are told to use (IOTEDGE_APIVERSION): what IoT Edge 1.5 gives edgeAgent, which
# passes it on to every module it deploys.
MODULE_DEFAULT = "2022-08-03"
