"""The DLMS/COSEM server's counters, shown in its status (docs/dlms.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DlmsCounters:
    """Since the service started."""

    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0  # beyond max_connections
    associations: int = 0
    associations_refused: int = 0
    requests: int = 0  # GET requests answered (each block of a long answer counts)
    errors: int = 0  # of them, answered with a data-access-result error
    closed_garbage: int = 0
    closed_idle: int = 0
