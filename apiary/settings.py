"""Apiary's configuration: one typed settings object, read from the environment.

Every field reads the environment variable ``APIARY_<FIELD NAME>`` (for example
``APIARY_PORT``); the description of each field states its default. Leaving a store's URL
unset selects its embedded default (DESIGN.md, "Stores"): a nats-server that Apiary
starts itself, chDB in the data directory. :func:`load_settings` validates everything at
start-up and turns a bad value into a :class:`~apiary.errors.ConfigurationError` that
says how to fix it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from apiary.errors import ConfigurationError

MiB = 1024 * 1024


class ApiarySettings(BaseSettings):
    """Everything Apiary can be told. Immutable once loaded; picklable for Ray."""

    model_config = SettingsConfigDict(env_prefix="APIARY_", frozen=True, extra="forbid")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("~/.apiary"),
        description="Directory for all embedded state (queue, ClickHouse, keys). "
        "Default ~/.apiary. Env APIARY_DATA_DIR.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP API listens on. Default 127.0.0.1. Env APIARY_HOST.",
    )
    port: int = Field(
        default=8787, ge=1, le=65535,
        description="Port of the HTTP API. Default 8787. Env APIARY_PORT.",
    )
    ray_address: str | None = Field(
        default=None,
        description="Address of an existing Ray cluster to join (e.g. 'ray://head:10001' or "
        "'head:6379'); unset starts a local Ray instance. Default unset. Env APIARY_RAY_ADDRESS.",
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1,
        description="CPUs a locally started Ray may schedule; unset lets Ray count them. "
        "Default unset. Env APIARY_RAY_NUM_CPUS.",
    )

    ray_object_store_bytes: int = Field(
        default=512 * MiB, ge=78 * MiB,
        description="Shared-memory object store of a locally started Ray (Arrow batches pass "
        "through it on their way to the chDB owner). Default 512 MiB. "
        "Env APIARY_RAY_OBJECT_STORE_BYTES.",
    )

    # --- stores ------------------------------------------------------------------------
    nats_url: str | None = Field(
        default=None,
        description="URL of a NATS server with JetStream (e.g. 'nats://nats:4222'); unset "
        "starts an embedded nats-server under the data dir. Default unset. Env APIARY_NATS_URL.",
    )
    nats_replicas: int = Field(
        default=1, ge=1, le=5,
        description="JetStream replicas for Apiary's streams (3 in a production cluster). "
        "Default 1. Env APIARY_NATS_REPLICAS.",
    )
    clickhouse_url: str | None = Field(
        default=None,
        description="HTTP URL of a ClickHouse server (e.g. 'http://user:pass@ch:8123'); unset "
        "uses embedded chDB under the data dir. Default unset. Env APIARY_CLICKHOUSE_URL.",
    )
    clickhouse_database: str = Field(
        default="apiary", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="ClickHouse database holding Apiary's tables. Default 'apiary'. "
        "Env APIARY_CLICKHOUSE_DATABASE.",
    )

    object_store_url: str | None = Field(
        default=None,
        description="Where dead-lettered batches and large payloads go: 's3://bucket/prefix'; "
        "unset uses <data-dir>/objects. Default unset. Env APIARY_OBJECT_STORE_URL.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for an S3-compatible server (MinIO, Ceph); unset uses AWS. "
        "Credentials come from the usual AWS_* variables. Default unset. "
        "Env APIARY_S3_ENDPOINT_URL.",
    )

    # --- ingestion ---------------------------------------------------------------------
    ingest_max_body_bytes: int = Field(
        default=16 * MiB, ge=1024,
        description="Largest request body accepted, before and after decompression; larger "
        "bodies get 413. Default 16 MiB. Env APIARY_INGEST_MAX_BODY_BYTES.",
    )
    ingest_replicas: int = Field(
        default=1, ge=1,
        description="Replicas of the data-plane HTTP deployment (the least, when it "
        "autoscales). Default 1. Env APIARY_INGEST_REPLICAS.",
    )
    ingest_max_replicas: int = Field(
        default=2, ge=1,
        description="Most replicas of the data-plane deployment: above ingest_replicas, Serve "
        "adds replicas while requests queue (decoding and mapping spans is CPU-bound, so one "
        "replica uses one core) and removes them when idle. Default 2. "
        "Env APIARY_INGEST_MAX_REPLICAS.",
    )
    serve_ingress: Literal["haproxy", "proxy"] = Field(
        default="haproxy",
        description="How HTTP reaches the Serve replicas: 'haproxy' (HAProxy ingress straight "
        "into each replica's own HTTP server) or 'proxy' (Serve's Python HTTP proxy and a Ray "
        "call per request; Serve's default). Default haproxy. Env APIARY_SERVE_INGRESS.",
    )
    ingest_max_inflight: int = Field(
        default=64, ge=1,
        description="Requests one replica processes at once; beyond it callers get 429 with "
        "Retry-After. Default 64. Env APIARY_INGEST_MAX_INFLIGHT.",
    )
    ingest_publish_timeout_s: float = Field(
        default=10.0, gt=0,
        description="How long a request waits for JetStream's acknowledgement before it is "
        "answered 503. Default 10 s. Env APIARY_INGEST_PUBLISH_TIMEOUT_S.",
    )
    ingest_backlog_limit: int = Field(
        default=20_000, ge=1,
        description="Unwritten messages (pending + unacknowledged, ~100 spans each) in the "
        "events stream above which ingestion answers 503 with Retry-After. Default 20000. "
        "Env APIARY_INGEST_BACKLOG_LIMIT.",
    )

    # --- the durable queue -------------------------------------------------------------
    events_stream_max_bytes: int = Field(
        default=8 * 1024 * MiB, ge=MiB,
        description="Bytes the events stream may hold unwritten; when full, publishes are "
        "refused and ingestion answers 503. Default 8 GiB. Env APIARY_EVENTS_STREAM_MAX_BYTES.",
    )
    duplicate_window_s: float = Field(
        default=600.0, gt=0,
        description="Window in which JetStream drops a re-published message with the same "
        "Nats-Msg-Id. Default 600 s. Env APIARY_DUPLICATE_WINDOW_S.",
    )

    # --- writers -----------------------------------------------------------------------
    writer_count: int = Field(
        default=1, ge=1,
        description="Writer actors consuming the events stream. Default 1. "
        "Env APIARY_WRITER_COUNT.",
    )
    writer_batch_rows: int = Field(
        default=20_000, ge=1,
        description="Rows a writer gathers before inserting. Default 20000. "
        "Env APIARY_WRITER_BATCH_ROWS.",
    )
    writer_flush_interval_s: float = Field(
        default=0.5, gt=0,
        description="Longest a received event waits in a writer before it is inserted. "
        "Default 0.5 s. Env APIARY_WRITER_FLUSH_INTERVAL_S.",
    )
    writer_ack_wait_s: float = Field(
        default=120.0, gt=0,
        description="How long JetStream waits for a writer's acknowledgement before "
        "redelivering. Default 120 s. Env APIARY_WRITER_ACK_WAIT_S.",
    )
    writer_max_deliver: int = Field(
        default=20, ge=2,
        description="Deliveries of one message before it is dead-lettered. Default 20. "
        "Env APIARY_WRITER_MAX_DELIVER.",
    )

    # --- trust in the control plane (data plane side) ----------------------------------
    control_plane_url: str | None = Field(
        default=None,
        description="Base URL of the control plane (e.g. 'https://cp.example.com') whose JWKS "
        "({url}/.well-known/jwks.json) and token exchange ({url}/v1/auth/token) this data plane "
        "trusts; unset makes `apiary up` run the control plane itself at <base URL>/cp. "
        "Default unset. Env APIARY_CONTROL_PLANE_URL.",
    )
    data_plane_id: str = Field(
        default="apiary-dp", pattern=r"^[A-Za-z0-9._:/-]{1,200}$",
        description="This data plane's id: the audience ('aud') every token it accepts must "
        "name exactly. Default 'apiary-dp'. Env APIARY_DATA_PLANE_ID.",
    )
    jwt_issuer: str | None = Field(
        default=None,
        description="The 'iss' every accepted token must carry; unset means the control plane "
        "URL. Default unset. Env APIARY_JWT_ISSUER.",
    )
    jwt_leeway_s: float = Field(
        default=30.0, ge=0, le=300,
        description="Clock skew tolerated when checking a token's exp, nbf and iat. "
        "Default 30 s. Env APIARY_JWT_LEEWAY_S.",
    )
    jwks_max_age_s: float = Field(
        default=300.0, gt=0,
        description="How long the control plane's JWKS is used before it is fetched again. "
        "Default 300 s. Env APIARY_JWKS_MAX_AGE_S.",
    )
    jwks_refetch_cooldown_s: float = Field(
        default=30.0, ge=0,
        description="Least time between two JWKS fetches caused by tokens naming an unknown "
        "'kid', so that forged kids cannot make the data plane hammer the control plane. "
        "Default 30 s. Env APIARY_JWKS_REFETCH_COOLDOWN_S.",
    )
    auth_cache_max_s: float = Field(
        default=60.0, gt=0,
        description="Longest the data plane keeps the identity of an API key it exchanged at "
        "the control plane (never beyond the token's expiry): a revoked key stops working "
        "within this time. Default 60 s. Env APIARY_AUTH_CACHE_MAX_S.",
    )
    auth_negative_cache_s: float = Field(
        default=5.0, ge=0,
        description="How long a key the control plane refused is refused again without asking "
        "it. Default 5 s. Env APIARY_AUTH_NEGATIVE_CACHE_S.",
    )
    auth_cache_entries: int = Field(
        default=20_000, ge=1,
        description="Most API keys, and most tokens, whose verification one replica "
        "remembers (each about 1 KB); the least recently used are forgotten first. "
        "Default 20000. Env APIARY_AUTH_CACHE_ENTRIES.",
    )

    # --- the data plane's metadata ---------------------------------------------------
    dp_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the data plane's metadata database (dpdb: datasets, "
        "datapoints, experiment runs), e.g. 'postgresql+psycopg://user:pass@pg:5432/apiary_dp' "
        "(a database of its own, never the control plane's); unset uses the SQLite file "
        "<data-dir>/dp.sqlite. Default unset. Env APIARY_DP_DATABASE_URL.",
    )

    # --- outbound calls to user-given URLs (apiary.outbound) ---------------------------
    outbound_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Hosts (exact names) or IP networks (CIDRs, or single addresses) that "
        "user-given URLs (LLM provider bases, OIDC issuers and their endpoints, webhooks) may "
        "reach although they are loopback, private or link-local, comma-separated; they (and "
        "names resolving only into listed networks) may also be called over http. "
        "Everything else must be https to a public address. "
        "Default empty. Env APIARY_OUTBOUND_ALLOWLIST.",
    )

    # --- LLM proxy and human review (data plane) -------------------------------------
    dp_envelope_key: SecretStr | None = Field(
        default=None,
        description="Base64 (url-safe) of 32 random bytes: the AES-256-GCM key that wraps the "
        "per-credential keys encrypting LLM provider keys in dpdb (never the control plane's "
        "key). Unset: generated once into <data-dir>/dp-envelope.key (mode 0600), which only "
        "works while dpdb is the embedded SQLite file; required with APIARY_DP_DATABASE_URL. "
        "Default unset. Env APIARY_DP_ENVELOPE_KEY.",
    )
    proxy_timeout_s: float = Field(
        default=120.0, gt=0, le=3600,
        description="Longest the LLM proxy waits for a provider (a request may ask for less); "
        "past it the caller gets 504. Default 120 s. Env APIARY_PROXY_TIMEOUT_S.",
    )
    review_fill_interval_s: float = Field(
        default=30.0, gt=0,
        description="How often annotation queues with rules are filled with newly matching "
        "events. Default 30 s. Env APIARY_REVIEW_FILL_INTERVAL_S.",
    )
    review_fill_lookback_s: float = Field(
        default=600.0, ge=0,
        description="How far before the previous fill a fill looks again (by event start "
        "time), so that events stored late still reach rule-filled queues. Default 600 s. "
        "Env APIARY_REVIEW_FILL_LOOKBACK_S.",
    )

    # --- the control plane ------------------------------------------------------------
    cp_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the control plane's database (cpdb), e.g. "
        "'postgresql+psycopg://user:pass@pg:5432/apiary_cp'; unset uses the SQLite file "
        "<data-dir>/cp.sqlite. Default unset. Env APIARY_CP_DATABASE_URL.",
    )
    cp_issuer: str | None = Field(
        default=None,
        description="URL at which data planes reach the control plane: the 'iss' of every token "
        "it signs, with {issuer}/.well-known/jwks.json and {issuer}/v1/auth/token under it, and "
        "the base of OIDC redirect URIs. Unset: <base_url>/cp. Default unset. "
        "Env APIARY_CP_ISSUER.",
    )
    cp_envelope_key: SecretStr | None = Field(
        default=None,
        description="Base64 (url-safe) of 32 random bytes: the AES-256-GCM key that encrypts "
        "secrets at rest in cpdb (signing keys, TOTP secrets, OIDC client secrets). Unset: "
        "generated once into <data-dir>/cp-envelope.key (mode 0600). Default unset. "
        "Env APIARY_CP_ENVELOPE_KEY.",
    )
    cp_token_ttl_s: int = Field(
        default=300, ge=30, le=3600,
        description="Lifetime of the access tokens the control plane signs (for data planes, "
        "and for itself). Default 300 s (5 min). Env APIARY_CP_TOKEN_TTL_S.",
    )
    cp_jwks_cache_s: int = Field(
        default=300, ge=0, le=86_400,
        description="How long data planes may cache the JWKS (sent as Cache-Control max-age); "
        "a rotated-in signing key is published this long before it signs. Must be at least "
        "every data plane's APIARY_JWKS_MAX_AGE_S. Default 300 s. Env APIARY_CP_JWKS_CACHE_S.",
    )
    cp_session_ttl_s: int = Field(
        default=7 * 86_400, ge=300,
        description="Lifetime of a user's login session. Default 604800 s (7 days). "
        "Env APIARY_CP_SESSION_TTL_S.",
    )
    cp_recent_auth_s: int = Field(
        default=900, ge=30, le=86_400,
        description="How recently a session must have authenticated (logged in or "
        "re-authenticated) to manage API keys, members, roles, SSO providers or the "
        "organization. Default 900 s (15 min). Env APIARY_CP_RECENT_AUTH_S.",
    )
    cp_signup_enabled: bool = Field(
        default=True,
        description="Whether anyone may create an account with email and password (invited "
        "users and SSO users are unaffected). Default true. Env APIARY_CP_SIGNUP_ENABLED.",
    )
    cp_password_min_length: int = Field(
        default=10, ge=8, le=128,
        description="Shortest password accepted. Default 10. Env APIARY_CP_PASSWORD_MIN_LENGTH.",
    )
    cp_login_max_failures: int = Field(
        default=5, ge=1,
        description="Wrong passwords one client address may try on one account before that "
        "pair backs off exponentially (1 s, 2 s, 4 s, ... up to APIARY_CP_LOGIN_LOCKOUT_S); "
        "other addresses, and the right password from them, are not affected. Default 5. "
        "Env APIARY_CP_LOGIN_MAX_FAILURES.",
    )
    cp_login_lockout_s: int = Field(
        default=900, ge=1,
        description="Longest back-off of one client address on one account, and how long "
        "its failures are remembered. Default 900 s. Env APIARY_CP_LOGIN_LOCKOUT_S.",
    )
    cp_login_account_backoff_max_s: float = Field(
        default=5.0, ge=0,
        description="Longest wait the account-wide back-off imposes between wrong passwords "
        "on one account from all addresses together (it grows slowly after 20 failures); "
        "seconds, never a lockout. Default 5 s. Env APIARY_CP_LOGIN_ACCOUNT_BACKOFF_MAX_S.",
    )
    cp_auth_ip_per_min: int = Field(
        default=30, ge=1,
        description="Credential checks (login, sign-up, password change, TOTP, SSO second "
        "factor) one client address may make per minute, all at once at most; beyond it 429 "
        "with Retry-After. Default 30. Env APIARY_CP_AUTH_IP_PER_MIN.",
    )
    cp_auth_ip_max_failures: int = Field(
        default=20, ge=1,
        description="Wrong passwords one client address may send across all accounts "
        "(credential stuffing, password spraying) at once; beyond that it is held to that many "
        "per hour (429 with Retry-After). Default 20. Env APIARY_CP_AUTH_IP_MAX_FAILURES.",
    )
    cp_session_token_per_min: int = Field(
        default=60, ge=1,
        description="Data-plane tokens one user, and one client address, may get by "
        "exchanging a session per minute. Default 60. Env APIARY_CP_SESSION_TOKEN_PER_MIN.",
    )
    cp_totp_max_failures: int = Field(
        default=5, ge=1,
        description="Wrong TOTP or recovery codes (at login, SSO, enrolment, disabling) one "
        "account may send within APIARY_CP_TOTP_WINDOW_S; then 429 for the window, doubling "
        "at each repetition up to 1 hour. Default 5. Env APIARY_CP_TOTP_MAX_FAILURES.",
    )
    cp_totp_window_s: int = Field(
        default=300, ge=1,
        description="Window of APIARY_CP_TOTP_MAX_FAILURES, and the first TOTP back-off. "
        "Default 300 s. Env APIARY_CP_TOTP_WINDOW_S.",
    )
    cp_max_concurrent_password_hashes: int = Field(
        default_factory=lambda: min(8, 2 * (os.cpu_count() or 1)), ge=1,
        description="Password hashes (argon2id, 64 MiB each) one control-plane process "
        "computes at once; a request that finds no slot within "
        "APIARY_CP_PASSWORD_HASH_WAIT_S gets 503 with Retry-After. Default 2 x CPUs, at "
        "most 8. Env APIARY_CP_MAX_CONCURRENT_PASSWORD_HASHES.",
    )
    cp_password_hash_wait_s: float = Field(
        default=2.0, ge=0,
        description="How long a login waits for a password-hash slot. Default 2 s. "
        "Env APIARY_CP_PASSWORD_HASH_WAIT_S.",
    )
    cp_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Networks (CIDRs or addresses, comma-separated) of reverse proxies whose "
        "X-Forwarded-For names the client address the control plane throttles by; from any "
        "other peer the header is ignored. Empty: the socket peer is the client. `apiary up`'s "
        "HAProxy passes a client's X-Forwarded-For through unchanged, so never list it unless "
        "a proxy that appends the real address stands in front of it. Default empty. "
        "Env APIARY_CP_TRUSTED_PROXIES.",
    )
    cp_invitation_ttl_s: int = Field(
        default=7 * 86_400, ge=60,
        description="How long an invitation can be accepted. Default 604800 s (7 days). "
        "Env APIARY_CP_INVITATION_TTL_S.",
    )
    cp_email_verification_ttl_s: int = Field(
        default=86_400, ge=60,
        description="How long a mailed email-verification link (sign-up, email change) can "
        "be used; each link works once. Default 86400 s (1 day). "
        "Env APIARY_CP_EMAIL_VERIFICATION_TTL_S.",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="SMTP server that sends verification and invitation mail: "
        "'smtp://host:port' (plain), 'smtp+starttls://user:pass@host:port' or "
        "'smtps://user:pass@host:port' (TLS). Unset: no mail is sent; the log says a "
        "verification is pending and `apiary users verify-link EMAIL` prints the link. "
        "Default unset. Env APIARY_SMTP_URL.",
    )
    smtp_from: str = Field(
        default="Apiary <apiary@localhost>", min_length=3, max_length=320,
        description="From address of the mail Apiary sends. Default 'Apiary "
        "<apiary@localhost>'. Env APIARY_SMTP_FROM.",
    )
    cp_key_last_used_resolution_s: int = Field(
        default=60, ge=1,
        description="Granularity of an API key's last-used time: it is written at most this "
        "often per key. Default 60 s. Env APIARY_CP_KEY_LAST_USED_RESOLUTION_S.",
    )
    cp_replicas: int = Field(
        default=1, ge=1,
        description="Replicas of the control-plane HTTP deployment. Default 1. "
        "Env APIARY_CP_REPLICAS.",
    )

    # --- rate limits and shared caches -------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="URL of a Redis server holding rate-limit counters and shared caches "
        "(e.g. 'redis://redis:6379/0'), shared by all replicas; unset keeps them in each "
        "process (limits then apply per replica). Default unset. Env APIARY_REDIS_URL.",
    )
    ingest_rate_limit_per_s: float = Field(
        default=1000.0, gt=0,
        description="Ingestion requests per second one credential may sustain; beyond it "
        "callers get 429 with Retry-After. Default 1000. Env APIARY_INGEST_RATE_LIMIT_PER_S.",
    )
    ingest_rate_limit_burst: int = Field(
        default=2000, ge=1,
        description="Ingestion requests one credential may send at once above its sustained "
        "rate (the token bucket's size). Default 2000. Env APIARY_INGEST_RATE_LIMIT_BURST.",
    )

    # --- Python metric sandbox (apiary.dataplane.evaluation.sandbox) ---
    sandbox_pool_size: int = Field(
        default=1, ge=1, le=64,
        description="Worker processes one evaluator keeps for Python metrics (metrics it runs "
        "at once). Default 1. Env APIARY_SANDBOX_POOL_SIZE.",
    )
    sandbox_cpu_s: int = Field(
        default=5, ge=1, le=600,
        description="CPU seconds one metric evaluation may use (RLIMIT_CPU; the kernel ends "
        "the worker past it). Default 5. Env APIARY_SANDBOX_CPU_S.",
    )
    sandbox_timeout_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="Wall-clock seconds one metric evaluation may take before its worker is "
        "killed and replaced. Default 10 s. Env APIARY_SANDBOX_TIMEOUT_S.",
    )
    sandbox_memory_mb: int = Field(
        default=512, ge=16,
        description="Address space (RLIMIT_AS) a metric may add on top of its worker's "
        "preloaded libraries, in MiB; the event being scored counts against it. "
        "Default 512. Env APIARY_SANDBOX_MEMORY_MB.",
    )
    sandbox_max_open_files: int = Field(
        default=16, ge=8, le=1024,
        description="Open file descriptors a worker may hold (RLIMIT_NOFILE). Default 16. "
        "Env APIARY_SANDBOX_MAX_OPEN_FILES.",
    )
    sandbox_max_code_bytes: int = Field(
        default=64 * 1024, ge=256, le=4 * MiB,
        description="Largest metric source accepted, in bytes (UTF-8). Default 65536. "
        "Env APIARY_SANDBOX_MAX_CODE_BYTES.",
    )
    sandbox_max_output_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * MiB,
        description="Largest result (score, explanation, extras, printed output) one "
        "evaluation may return, in bytes; above it the evaluation fails. Default 65536. "
        "Env APIARY_SANDBOX_MAX_OUTPUT_BYTES.",
    )
    sandbox_max_jobs_per_worker: int = Field(
        default=1000, ge=1,
        description="Evaluations one worker process serves before it is replaced by a fresh "
        "one (1: a new process for every evaluation). Workers never serve two isolation keys "
        "(projects). Default 1000. Env APIARY_SANDBOX_MAX_JOBS_PER_WORKER.",
    )
    sandbox_uid: int = Field(
        default=65534, ge=1,
        description="Unprivileged user (and group) id that workers switch to when Apiary runs "
        "as root; ignored otherwise. Default 65534 (nobody). Env APIARY_SANDBOX_UID.",
    )
    sandbox_allow_degraded_isolation: bool = Field(
        default=False,
        description="Run metrics even when the kernel refuses part of the OS isolation "
        "(network namespace, seccomp, Landlock); otherwise the sandbox refuses to start. "
        "Default false. Env APIARY_SANDBOX_ALLOW_DEGRADED_ISOLATION.",
    )

    # --- evaluation service and pool scaling (apiary.dataplane.evaluation, apiary.dataplane.scaling
    evaluator_min: int = Field(
        default=1, ge=0,
        description="Fewest evaluator actors (consumers of the evaluation stream); the pool "
        "never shrinks below it. Default 1. Env APIARY_EVALUATOR_MIN.",
    )
    evaluator_max: int = Field(
        default=2, ge=1,
        description="Most evaluator actors the pool grows to on queue depth (at least "
        "APIARY_EVALUATOR_MIN). Default 2. Env APIARY_EVALUATOR_MAX.",
    )
    evaluator_concurrency: int = Field(
        default=16, ge=1, le=256,
        description="Tasks one evaluator works on at once: most of a task's time is spent "
        "waiting (JetStream, an LLM judge); Python metrics also wait for one of its "
        "APIARY_SANDBOX_POOL_SIZE sandbox workers. Default 16. "
        "Env APIARY_EVALUATOR_CONCURRENCY.",
    )
    evaluator_backlog_per_actor: int = Field(
        default=50, ge=1,
        description="Evaluation tasks waiting or in progress (JetStream pending + "
        "unacknowledged) per evaluator that the scaler aims for: the pool grows when the "
        "backlog exceeds this times its size. Default 50. "
        "Env APIARY_EVALUATOR_BACKLOG_PER_ACTOR.",
    )
    writer_max: int | None = Field(
        default=None, ge=1,
        description="Most writer actors when the writer pool scales on queue depth; "
        "APIARY_WRITER_COUNT writers always run. Unset: exactly APIARY_WRITER_COUNT. "
        "Default unset. Env APIARY_WRITER_MAX.",
    )
    writer_backlog_per_actor: int = Field(
        default=1000, ge=1,
        description="Unwritten messages in the events stream per writer that the scaler aims "
        "for (with APIARY_WRITER_MAX). Default 1000. Env APIARY_WRITER_BACKLOG_PER_ACTOR.",
    )
    scale_interval_s: float = Field(
        default=2.0, gt=0,
        description="How often the pool scalers read their consumer's backlog. Default 2 s. "
        "Env APIARY_SCALE_INTERVAL_S.",
    )
    scale_up_delay_s: float = Field(
        default=10.0, ge=0,
        description="How long a pool must have wanted more actors before it grows (to the "
        "least it wanted during that time). Default 10 s. Env APIARY_SCALE_UP_DELAY_S.",
    )
    scale_down_delay_s: float = Field(
        default=60.0, ge=0,
        description="How long a pool must have wanted fewer actors before it shrinks (to the "
        "most it wanted during that time); removed actors finish their work first. "
        "Default 60 s. Env APIARY_SCALE_DOWN_DELAY_S.",
    )
    evaluator_definitions_ttl_s: float = Field(
        default=5.0, gt=0,
        description="How long a writer uses a project's online evaluators before reading "
        "them again: a deployed, changed or disabled metric takes effect within this time. "
        "Default 5 s. Env APIARY_EVALUATOR_DEFINITIONS_TTL_S.",
    )
    evaluator_ledger_ttl_s: float = Field(
        default=86_400.0, gt=0,
        description="How long the ids of scored evaluation tasks are remembered, so that a "
        "task queued again after JetStream's duplicate window is not scored twice. "
        "Default 86400 s (1 day). Env APIARY_EVALUATOR_LEDGER_TTL_S.",
    )
    evaluator_judge_url: str | None = Field(
        default=None,
        description="Base URL of the OpenAI-compatible API that LLM-judge metrics call "
        "({url}/chat/completions); unset: this data plane's LLM proxy, called in-process as "
        "the scored event's tenant (its workspace's provider key). Default unset. "
        "Env APIARY_EVALUATOR_JUDGE_URL.",
    )
    evaluator_judge_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer credential evaluators send to the judge API (for the LLM proxy: "
        "a key allowed to use it). Default unset. Env APIARY_EVALUATOR_JUDGE_API_KEY.",
    )
    evaluator_judge_model: str = Field(
        default="gpt-4o-mini", min_length=1,
        description="Model an LLM-judge metric uses when it names none. Default "
        "'gpt-4o-mini'. Env APIARY_EVALUATOR_JUDGE_MODEL.",
    )
    evaluator_judge_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Longest one judge call may take before it is retried later. Default "
        "60 s. Env APIARY_EVALUATOR_JUDGE_TIMEOUT_S.",
    )

    # --- observability -----------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level. Default INFO. Env APIARY_LOG_LEVEL.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log line format. Default json. Env APIARY_LOG_FORMAT.",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("outbound_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        # The environment gives one comma-separated string; code may pass a sequence.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return value
        entries: list[str] = []
        for item in items:
            entry = str(item).strip().lower().rstrip(".")
            if not entry:
                continue
            if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
                try:
                    ipaddress.ip_network(entry.strip("[]"), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item!r} is neither a host name nor an IP network such as "
                        "'10.0.0.0/8' or '127.0.0.1'"
                    ) from None
            entries.append(entry)
        return tuple(entries)

    @field_validator("cp_trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: object) -> object:
        # The environment gives one comma-separated string; code may pass a sequence.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return value
        networks: list[str] = []
        for item in items:
            entry = str(item).strip()
            if not entry:
                continue
            try:
                networks.append(str(ipaddress.ip_network(entry.strip("[]"), strict=False)))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP network such as '10.0.0.0/8' or '127.0.0.1'"
                ) from None
        return tuple(networks)

    @field_validator("clickhouse_url")
    @classmethod
    def _http_clickhouse(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be an http:// or https:// URL of a ClickHouse server; "
                "unset APIARY_CLICKHOUSE_URL to use embedded chDB"
            )
        return value

    @field_validator("object_store_url")
    @classmethod
    def _s3_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(
                "must be an s3://bucket/prefix URL; unset APIARY_OBJECT_STORE_URL to keep "
                "objects under the data dir"
            )
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("nats://", "tls://")):
            raise ValueError(
                "must be a nats:// or tls:// URL; unset APIARY_NATS_URL to start an embedded "
                "nats-server"
            )
        return value

    @field_validator("control_plane_url")
    @classmethod
    def _http_control_plane(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be an http:// or https:// URL of the control plane; unset "
                "APIARY_CONTROL_PLANE_URL to run the control plane inside `apiary up`"
            )
        return value.rstrip("/") if value is not None else None

    @field_validator("evaluator_judge_url")
    @classmethod
    def _http_judge(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must be the http:// or https:// base URL of an OpenAI-compatible API; unset "
                "APIARY_EVALUATOR_JUDGE_URL to use this data plane's LLM proxy"
            )
        return value.rstrip("/") if value is not None else None

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("smtp://", "smtps://", "smtp+starttls://")
        ):
            raise ValueError(
                "must be an smtp://, smtp+starttls:// or smtps:// URL; unset APIARY_SMTP_URL "
                "to print verification links with `apiary users verify-link`"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must be a redis://, rediss:// or unix:// URL; unset APIARY_REDIS_URL to keep "
                "rate limits and caches in-process"
            )
        return value

    @field_validator("dp_database_url")
    @classmethod
    def _dp_database_driver(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql+psycopg://", "sqlite:///")):
            raise ValueError(
                "must be a 'postgresql+psycopg://...' or 'sqlite:///path' URL; unset "
                "APIARY_DP_DATABASE_URL to use <data-dir>/dp.sqlite"
            )
        return value

    @field_validator("cp_database_url")
    @classmethod
    def _cp_database_driver(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql+psycopg://", "sqlite:///")):
            raise ValueError(
                "must be a 'postgresql+psycopg://...' or 'sqlite:///path' URL; unset "
                "APIARY_CP_DATABASE_URL to use <data-dir>/cp.sqlite"
            )
        return value

    @property
    def embedded_clickhouse(self) -> bool:
        return self.clickhouse_url is None

    @property
    def embedded_nats(self) -> bool:
        return self.nats_url is None

    @property
    def trusted_issuer(self) -> str | None:
        """The ``iss`` accepted tokens must carry: ``jwt_issuer``, else the control plane URL."""
        return self.jwt_issuer or self.control_plane_url

    @property
    def dp_database(self) -> str:
        """The dpdb URL in force: ``dp_database_url``, or the embedded SQLite file."""
        return self.dp_database_url or f"sqlite:///{self.data_dir / 'dp.sqlite'}"

    @property
    def cp_database(self) -> str:
        """The cpdb URL in force: ``cp_database_url``, or the embedded SQLite file."""
        return self.cp_database_url or f"sqlite:///{self.data_dir / 'cp.sqlite'}"

    @property
    def cp_issuer_url(self) -> str:
        """The control plane's issuer URL in force (no trailing slash)."""
        return (self.cp_issuer or f"{self.base_url}/cp").rstrip("/")

    @property
    def judge_url(self) -> str:
        """The OpenAI-compatible base URL LLM judges call: ``evaluator_judge_url``, else the
        data plane's LLM proxy."""
        return self.evaluator_judge_url or f"{self.base_url}/v1"

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_settings(**overrides: object) -> ApiarySettings:
    """Read settings from the environment (and ``overrides``), or explain what to fix.

    Raises :class:`ConfigurationError` naming each bad field, its environment variable and
    the constraint it broke.
    """
    try:
        return ApiarySettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"APIARY_{field.upper()}"
            problems.append(f"{field} (env {env}): {err['msg']}")
        raise ConfigurationError(
            "invalid Apiary configuration: " + "; ".join(problems)
        ) from None
