"""Suite-wide guard: no test may open a network connection except to servers a test starts on
the loopback address. Resolving any other name fails the test at once (with the name), in
this process; tests that start subprocesses check those themselves (tests/test_no_network.py)."""
from __future__ import annotations

import socket

import pytest

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "", None}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK and not str(name).startswith("127."):
            raise OSError(f"test tried to reach the network: {name!r} (only loopback servers a test starts are allowed)")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
