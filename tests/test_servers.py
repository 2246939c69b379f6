"""The test servers of tests/_servers.py start, answer and stop."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import psycopg
from _servers import http_server, postgres_database, postgres_server, redis_server
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_redis_server_answers_ping_and_stops() -> None:
    with redis_server() as url:
        port = urlsplit(url).port
        assert url.startswith("redis://127.0.0.1:")
        assert port
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(16) == b"+PONG\r\n"
    assert _port_closed(port)


def test_postgres_server_answers_select_and_stops() -> None:
    with postgres_server() as url:
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        port = urlsplit(url).port
        assert port
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            version = conn.execute("SHOW server_version").fetchone()
            assert version is not None
            assert version[0].startswith("15")
        other = postgres_database(url, "apiary_other")
        with psycopg.connect(other.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("apiary_other",)
    assert _port_closed(port)


def test_http_server_serves_the_app() -> None:
    app = Starlette(routes=[Route("/hello", lambda _: PlainTextResponse("hi"))])
    with http_server(app) as url:
        assert httpx.get(f"{url}/hello").text == "hi"
        port = urlsplit(url).port
    assert port
    assert _port_closed(port)
