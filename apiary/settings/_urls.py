"""The one check of every URL setting: a table of the schemes each accepts.

Each rule says which schemes a URL setting accepts, what it must therefore be, and what
unsetting it does instead, so that a bad value is refused with a message that says how to
fix it: ``must be <what>; unset APIARY_<FIELD> <instead>``. Rules marked ``strip_slash``
store the URL without a trailing slash (code appends paths to it).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

_HTTP = ("http://", "https://")
_DATABASE = ("postgresql+psycopg://", "sqlite:///")


@dataclass(frozen=True)
class UrlRule:
    """What one URL setting accepts (see the module docstring)."""

    schemes: tuple[str, ...]
    what: str
    instead: str
    strip_slash: bool = False


URL_RULES: dict[str, UrlRule] = {
    "nats_url": UrlRule(
        ("nats://", "tls://"), "a nats:// or tls:// URL", "to start an embedded nats-server"),
    "clickhouse_url": UrlRule(
        _HTTP, "an http:// or https:// URL of a ClickHouse server", "to use embedded chDB"),
    "object_store_url": UrlRule(
        ("s3://",), "an s3://bucket/prefix URL", "to keep objects under the data dir"),
    "redis_url": UrlRule(
        ("redis://", "rediss://", "unix://"), "a redis://, rediss:// or unix:// URL",
        "to keep rate limits and caches in-process"),
    "control_plane_url": UrlRule(
        _HTTP, "an http:// or https:// URL of the control plane",
        "to run the control plane inside `apiary up`", strip_slash=True),
    "evaluator_judge_url": UrlRule(
        _HTTP, "the http:// or https:// base URL of an OpenAI-compatible API",
        "to use this data plane's LLM proxy", strip_slash=True),
    "dp_database_url": UrlRule(
        _DATABASE, "a 'postgresql+psycopg://...' or 'sqlite:///path' URL",
        "to use <data-dir>/dp.sqlite"),
    "cp_database_url": UrlRule(
        _DATABASE, "a 'postgresql+psycopg://...' or 'sqlite:///path' URL",
        "to use <data-dir>/cp.sqlite"),
    "smtp_url": UrlRule(
        ("smtp://", "smtps://", "smtp+starttls://"),
        "an smtp://, smtp+starttls:// or smtps:// URL",
        "to print verification links with `apiary users verify-link`"),
    "notify_smtp_url": UrlRule(
        ("smtp://", "smtps://", "smtp+starttls://"),
        "an smtp://, smtp+starttls:// or smtps:// URL",
        "to send alert mail through SES (ses_region) or a channel's own SMTP URL only"),
    "ses_endpoint_url": UrlRule(
        _HTTP, "an http:// or https:// URL of an SES-compatible endpoint", "to use AWS's",
        strip_slash=True),
    "cp_ses_endpoint_url": UrlRule(
        _HTTP, "an http:// or https:// URL of an SES-compatible endpoint", "to use AWS's",
        strip_slash=True),
}

def check_url(field: str, value: str | SecretStr | None) -> str | SecretStr | None:
    """``value`` of the URL setting ``field`` if its rule accepts it (without a trailing
    slash where the rule says so); raises :class:`ValueError` saying how to fix it."""
    if value is None:
        return value
    rule = URL_RULES[field]
    url = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not url.startswith(rule.schemes):
        raise ValueError(f"must be {rule.what}; unset APIARY_{field.upper()} {rule.instead}")
    if rule.strip_slash and isinstance(value, str):
        return url.rstrip("/")
    return value
