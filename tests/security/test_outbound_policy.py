"""The outbound-URL policy (``apiary.outbound``) against real sockets on 127.0.0.1: what it
refuses when a URL is accepted, and what its HTTP clients refuse when they connect (issue
items 4 and 5: SSRF through provider bases, OIDC endpoints and webhooks).

Every "refused" case also shows that the server it would have reached received nothing.
Name resolution is the system's unless a test injects a resolver: that is how the DNS
rebinding attack (a public answer when the URL is checked, loopback when it is called) is
played without a DNS server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiary.errors import ConfigurationError, InvalidRequest, OutboundUrlRefused
from apiary.outbound import OutboundPolicy, Resolver
from apiary.settings import load_settings
from security._recording_server import RecordingServer, recording_server

PUBLIC = "198.51.100.7"  # TEST-NET-2: only "public" once an allow-list admits it
REALLY_PUBLIC = "93.184.216.34"


@pytest.fixture
def internal() -> Iterator[RecordingServer]:
    """A service on loopback that no user-given URL may reach."""
    with recording_server() as server:
        yield server


def _resolver(*answers: Sequence[str]) -> tuple[list[str], Resolver]:
    """A resolver answering ``answers`` in turn (the last one again once they run out);
    also the list of names it was asked for."""
    asked: list[str] = []
    pending = [list(a) for a in answers]

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return pending.pop(0) if len(pending) > 1 else pending[0]
    return asked, resolve


def _refusal(call: pytest.ExceptionInfo[httpx.ConnectError]) -> OutboundUrlRefused:
    cause = call.value.__cause__
    assert isinstance(cause, OutboundUrlRefused), repr(cause)
    return cause


def _never(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} must not be resolved: the URL is refused as written")


# --- at check time ---------------------------------------------------------------------


def test_public_https_url_is_accepted_and_normalized() -> None:
    asked, resolve = _resolver([REALLY_PUBLIC])
    policy = OutboundPolicy(resolver=resolve)
    assert policy.check_url("HTTPS://Api.Example.COM/v1", field="api_base") == (
        "https://api.example.com/v1")
    assert asked == ["api.example.com"]


def test_refusal_is_a_precise_400_naming_field_and_reason() -> None:
    with pytest.raises(OutboundUrlRefused) as refused:
        OutboundPolicy().check_url("https://10.1.2.3/v1", field="api_base")
    error = refused.value
    assert isinstance(error, InvalidRequest)
    assert error.status == 400
    assert error.to_body() == {
        "message": error.message, "errorCode": "outbound_url_refused",
        "details": {"field": "api_base", "reason": "private_address"}}
    assert error.context["url"] == "https://10.1.2.3/v1"


@pytest.mark.parametrize(("url", "reason"), [
    ("http://93.184.216.34/v1", "http_not_allowed"),
    ("ftp://93.184.216.34/v1", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("https://user:secret@api.example.com/v1", "userinfo"),
    ("https:///v1", "no_host"),
    ("not a url at all", "scheme"),
])
def test_plain_http_other_schemes_and_embedded_credentials_are_refused(
        url: str, reason: str) -> None:
    with pytest.raises(OutboundUrlRefused) as refused:
        OutboundPolicy(resolver=_never).check_url(url, field="webhook_url")
    assert refused.value.context["reason"] == reason
    assert refused.value.context["field"] == "webhook_url"


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.0.0.1/v1", "private_address"),
    ("https://10.0.0.1/v1", "private_address"),
    ("https://192.168.1.10/", "private_address"),
    ("https://172.16.0.1/", "private_address"),
    ("https://100.64.0.1/", "non_public_address"),
    ("https://169.254.169.254/latest/meta-data/", "link_local_address"),
    ("https://127.0.0.1/", "loopback_address"),
    ("https://0.0.0.0/", "unspecified_address"),
    ("https://[::1]/", "loopback_address"),
    ("https://[::]/", "unspecified_address"),
    ("https://[fe80::1]/", "link_local_address"),
    ("https://[fd00::1]/", "private_address"),
    ("https://[::ffff:127.0.0.1]/", "loopback_address"),
    ("https://[::ffff:169.254.169.254]/", "link_local_address"),
    ("https://[2002:7f00:1::]/", "loopback_address"),  # 6to4 of 127.0.0.1
    ("https://[64:ff9b::a00:1]/", "private_address"),  # NAT64 of 10.0.0.1
    ("https://224.0.0.1/", "multicast_address"),
    ("https://240.0.0.1/", "reserved_address"),
])
def test_literal_internal_addresses_are_refused_without_resolving_or_connecting(
        url: str, reason: str) -> None:
    policy = OutboundPolicy(resolver=_never)
    with pytest.raises(OutboundUrlRefused) as refused:
        policy.check_url(url, field="api_base")
    assert refused.value.context["reason"] == reason
    # The client refuses it too, before any TCP connection (a connection to these would
    # time out or fail with an OSError, not with the policy's refusal).
    with policy.client(timeout=5) as client, pytest.raises(httpx.ConnectError) as call:
        client.get(url)
    assert _refusal(call).context["reason"] == reason


def test_metadata_service_address_is_refused_by_check_and_client() -> None:
    policy = OutboundPolicy()
    with pytest.raises(OutboundUrlRefused, match="link-local"):
        policy.check_url("http://169.254.169.254/latest/meta-data/iam/", field="api_base")
    with policy.client(timeout=5) as client, pytest.raises(httpx.ConnectError) as call:
        client.get("http://169.254.169.254/latest/meta-data/iam/")
    assert _refusal(call).context["address"] == "169.254.169.254"


def test_host_name_resolving_to_loopback_is_refused_unless_allow_listed(
        internal: RecordingServer) -> None:
    url = f"http://localhost:{internal.port}/admin"
    strict = OutboundPolicy()
    with pytest.raises(OutboundUrlRefused) as refused:
        strict.check_url(f"https://localhost:{internal.port}/admin", field="api_base")
    assert refused.value.context["reason"] == "loopback_address"
    with strict.client(timeout=5) as client, pytest.raises(httpx.ConnectError) as call:
        client.get(url)
    assert _refusal(call).context["reason"] == "loopback_address"
    assert internal.received == []
    # The operator allow-lists the name: http to it is fine, and it is really reached.
    allowed = OutboundPolicy(["localhost"])
    assert allowed.check_url(url, field="api_base") == url
    with allowed.client(timeout=5) as client:
        assert client.get(url).json() == {"ok": True}
    assert [r.path for r in internal.received] == ["/admin"]


def test_decimal_ip_host_that_resolves_to_loopback_is_refused() -> None:
    # 2130706433 is 127.0.0.1 as one number; getaddrinfo accepts it.
    with pytest.raises(OutboundUrlRefused) as refused:
        OutboundPolicy().check_url("https://2130706433/", field="api_base")
    assert refused.value.context["reason"] == "loopback_address"


def test_a_name_with_one_internal_answer_among_public_ones_is_refused(
        internal: RecordingServer) -> None:
    _, resolve = _resolver([REALLY_PUBLIC, "127.0.0.1"])
    policy = OutboundPolicy(resolver=resolve)
    with pytest.raises(OutboundUrlRefused):
        policy.check_url("https://mixed.example/", field="api_base")
    with policy.client(timeout=5) as client, pytest.raises(httpx.ConnectError) as call:
        client.get(f"http://localhost:{internal.port}/")
    assert _refusal(call).context["address"] == "127.0.0.1"
    assert internal.received == []


def test_cidr_allow_list_entry_admits_its_addresses_and_only_those(
        internal: RecordingServer) -> None:
    loopback = OutboundPolicy(["127.0.0.0/8"])
    url = f"http://127.0.0.1:{internal.port}/ok"
    assert loopback.check_url(url, field="api_base") == url
    with loopback.client(timeout=5) as client:
        assert client.get(url).status_code == 200
    assert len(internal.received) == 1
    with pytest.raises(OutboundUrlRefused):
        loopback.check_url("https://10.0.0.1/", field="api_base")
    private = OutboundPolicy(["10.0.0.0/8"])
    with pytest.raises(OutboundUrlRefused):
        private.check_url(url, field="api_base")
    with private.client(timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get(url)
    assert len(internal.received) == 1


def test_http_to_a_name_inside_an_allow_listed_network_is_admitted() -> None:
    _, resolve = _resolver(["10.20.0.5"])
    policy = OutboundPolicy(["10.0.0.0/8"], resolver=resolve)
    assert policy.check_url("http://vllm.internal:8000/v1", field="api_base") == (
        "http://vllm.internal:8000/v1")
    _, outside = _resolver([REALLY_PUBLIC])
    with pytest.raises(OutboundUrlRefused) as refused:
        OutboundPolicy(["10.0.0.0/8"], resolver=outside).check_url(
            "http://public.example/v1", field="api_base")
    assert refused.value.context["reason"] == "http_not_allowed"


# --- at connect time: DNS rebinding -----------------------------------------------------


def test_dns_rebinding_to_loopback_after_the_check_is_refused_at_connect_time(
        internal: RecordingServer) -> None:
    # The name answers an allow-listed address when the URL is checked, then loopback.
    asked, resolve = _resolver([PUBLIC], ["127.0.0.1"])
    policy = OutboundPolicy(["198.51.100.0/24"], resolver=resolve)
    url = f"http://localhost:{internal.port}/v1/chat/completions"
    assert policy.check_url(url, field="api_base") == url
    with policy.client(timeout=5) as client, pytest.raises(httpx.ConnectError) as call:
        client.post(url, json={"model": "m"}, headers={"authorization": "Bearer sk-secret"})
    assert _refusal(call).context["reason"] == "loopback_address"
    assert asked == ["localhost", "localhost"]
    assert internal.received == []


async def test_dns_rebinding_is_refused_by_the_async_client_too(
        internal: RecordingServer) -> None:
    _, resolve = _resolver([PUBLIC], ["127.0.0.1"])
    policy = OutboundPolicy(["198.51.100.0/24"], resolver=resolve)
    url = f"http://localhost:{internal.port}/v1/chat/completions"
    policy.check_url(url, field="api_base")
    async with policy.async_client(timeout=5) as client:
        with pytest.raises(httpx.ConnectError) as call:
            await client.post(url, json={"model": "m"})
    assert _refusal(call).context["reason"] == "loopback_address"
    assert internal.received == []


async def test_the_async_client_connects_to_the_address_it_checked(
        internal: RecordingServer) -> None:
    # The checked answer is where the connection goes, not a second resolution: the name
    # is not even resolvable by the system.
    _, resolve = _resolver(["127.0.0.1"])
    policy = OutboundPolicy(["127.0.0.1"], resolver=resolve)
    async with policy.async_client(timeout=5) as client:
        answer = await client.get(f"http://no-such-host.invalid:{internal.port}/pinned")
    assert answer.status_code == 200
    assert [r.path for r in internal.received] == ["/pinned"]


def test_redirects_to_internal_addresses_are_never_followed(
        internal: RecordingServer) -> None:
    with recording_server(redirect_to=f"http://127.0.0.1:{internal.port}/secret") as public:
        policy = OutboundPolicy(["localhost"])
        with policy.client(timeout=5, follow_redirects=True) as client:
            answer = client.get(f"http://localhost:{public.port}/")
        assert answer.status_code == 302
        assert len(public.received) == 1
    assert internal.received == []


def test_clients_refuse_arguments_that_would_bypass_the_check() -> None:
    policy = OutboundPolicy()
    bypasses: list[dict[str, Any]] = [
        {"transport": httpx.HTTPTransport()}, {"proxy": "http://127.0.0.1:3128"},
        {"mounts": {}}]
    for bypass in bypasses:
        with pytest.raises(TypeError, match="bypass"):
            policy.client(**bypass)
        with pytest.raises(TypeError, match="bypass"):
            policy.async_client(**bypass)


# --- the setting ---------------------------------------------------------------------------


def test_allow_list_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("APIARY_OUTBOUND_ALLOWLIST", " LocalHost , 10.0.0.0/8,,::1 ")
    settings = load_settings(data_dir=tmp_path)
    assert settings.outbound_allowlist == ("localhost", "10.0.0.0/8", "::1")
    policy = OutboundPolicy.from_settings(settings)
    assert policy.check_url("http://10.1.1.1/v1", field="api_base") == "http://10.1.1.1/v1"
    assert policy.check_url("http://[::1]:8000/", field="api_base") == "http://[::1]:8000/"
    with pytest.raises(OutboundUrlRefused):
        policy.check_url("https://192.168.0.1/", field="api_base")
    monkeypatch.setenv("APIARY_OUTBOUND_ALLOWLIST", "10.0.0.0/33")
    with pytest.raises(ConfigurationError, match="APIARY_OUTBOUND_ALLOWLIST"):
        load_settings(data_dir=tmp_path)


def test_default_allow_list_is_empty(monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    monkeypatch.delenv("APIARY_OUTBOUND_ALLOWLIST", raising=False)
    settings = load_settings(data_dir=tmp_path)
    assert settings.outbound_allowlist == ()
    with pytest.raises(OutboundUrlRefused):
        OutboundPolicy.from_settings(settings).check_url("http://127.0.0.1:1/",
                                                         field="api_base")
