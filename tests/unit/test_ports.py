"""The tests' loopback ports: one run never hands the same port to two servers."""

from __future__ import annotations

import socket

from tests.servers.ports import free_port


def test_no_port_is_handed_out_twice_in_a_run() -> None:
    # The kernel picks bind(0)'s port at random among ~14,000 free ones, so 500 plain picks
    # repeat one about nine times on average; two workers started together were once given
    # the same metrics port (the later one died on "Address already in use").
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_handed_out_port_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()
