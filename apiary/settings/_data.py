"""Settings of the data plane: its stores (JetStream, ClickHouse, dpdb, objects), ingestion,
the writers, trust in the control plane, the LLM proxy and human review, the Python metric
sandbox, the evaluators and the pool scalers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from apiary.settings._common import CommonSettings
from apiary.settings._fields import MiB, comma_separated, on_cluster
from apiary.settings._files import pem_certificates


class DataPlaneSettings(CommonSettings):
    """What the data plane reads (beside :class:`CommonSettings`)."""

    # --- stores ---------------------------------------------------------------------------
    nats_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True, required=True),
        description="URL of a NATS server with JetStream (e.g. 'nats://nats:4222'); unset starts "
        "an embedded nats-server under the data dir.",
    )
    jetstream_key: SecretStr | None = Field(
        default=None, min_length=32, json_schema_extra=on_cluster(secret=True),
        description="The key encrypting the embedded nats-server's JetStream store at rest "
        "(AES-GCM): at least 32 characters of base64 (e.g. `openssl rand -base64 32`). Unset: "
        "generated once into <data-dir>/nats-store.key (mode 0600). Set it to keep the key off "
        "the store's disk; a store started with another key, or without its key, is refused. "
        "Not used with APIARY_NATS_URL: a NATS cluster encrypts its store with its own "
        "`jetstream { cipher, key }` (docs/deploy.md).",
    )
    nats_replicas: int = Field(
        default=1, ge=1, le=5,
        description="JetStream replicas for Apiary's streams (3 in a production cluster).",
    )
    clickhouse_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True, required=True),
        description="HTTP URL of a ClickHouse server (e.g. 'http://user:pass@ch:8123'); unset uses "
        "embedded chDB under the data dir.",
    )
    clickhouse_database: str = Field(
        default="apiary", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="ClickHouse database holding Apiary's tables.",
    )
    object_store_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(required=True),
        description="Where dead-lettered batches and large payloads go: 's3://bucket/prefix'; "
        "unset uses <data-dir>/objects.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint for an S3-compatible server (MinIO, Ceph); unset uses AWS. "
        "Credentials come from the usual AWS_* variables.",
    )

    # --- ingestion ------------------------------------------------------------------------
    ingest_max_body_bytes: int = Field(
        default=16 * MiB, ge=1024,
        description="Largest request body accepted, before and after decompression; larger bodies "
        "get 413.",
    )
    otlp_grpc_port: int = Field(
        default=4317, ge=0, le=65535,
        description="Port of the OTLP/gRPC trace receiver (TraceService/Export) on the host "
        "address; every data-plane replica on a host listens on it (SO_REUSEPORT). 0 turns it "
        "off.",
    )
    ingest_replicas: int = Field(
        default=1, ge=1,
        description="Replicas of the data-plane HTTP deployment (the least, when it autoscales).",
    )
    ingest_max_replicas: int = Field(
        default=2, ge=1,
        description="Most replicas of the data-plane deployment: above ingest_replicas, Serve adds "
        "replicas while requests queue (decoding and mapping spans is CPU-bound, so one replica "
        "uses one core) and removes them when idle.",
    )
    ingest_max_inflight: int = Field(
        default=64, ge=1,
        description="Requests one replica processes at once; beyond it callers get 429 with "
        "Retry-After.",
    )
    ingest_publish_timeout_s: float = Field(
        default=10.0, gt=0,
        description="How long a request waits for JetStream's acknowledgement before it is "
        "answered 503.",
    )
    ingest_backlog_limit: int = Field(
        default=20_000, ge=1,
        description="Unwritten messages (pending + unacknowledged, ~100 spans each) in the events "
        "stream above which ingestion answers 503 with Retry-After.",
    )

    # --- the durable queue ----------------------------------------------------------------
    events_stream_max_bytes: int = Field(
        default=8 * 1024 * MiB, ge=MiB,
        description="Bytes the events stream may hold unwritten; when full, publishes are refused "
        "and ingestion answers 503. JetStream reserves it, a quarter more for the evaluation "
        "stream and up to 256 MiB each for notifications and alert activity, out of 75% of "
        "the disk free when nats-server starts. Unset, the default is a ceiling: on a smaller "
        "store the streams are sized down to fit (start-up says so). Set, start-up fails, "
        "naming this setting, when they do not fit.",
    )
    duplicate_window_s: float = Field(
        default=600.0, gt=0,
        description="Window in which JetStream drops a re-published message with the same "
        "Nats-Msg-Id.",
    )

    # --- writers --------------------------------------------------------------------------
    writer_count: int = Field(
        default=1, ge=1,
        description="Writer actors consuming the events stream.",
    )
    writer_batch_rows: int = Field(
        default=20_000, ge=1,
        description="Rows a writer gathers before inserting.",
    )
    writer_flush_interval_s: float = Field(
        default=0.5, gt=0,
        description="Longest a received event waits in a writer before it is inserted.",
    )
    writer_ack_wait_s: float = Field(
        default=120.0, gt=0,
        description="How long JetStream waits for a writer's acknowledgement before redelivering.",
    )
    writer_max_deliver: int = Field(
        default=20, ge=2,
        description="Deliveries of one message before it is dead-lettered.",
    )
    writer_crash_loop_limit: int = Field(
        default=3, ge=1,
        description="Times a message may crash its writer (a process killed while it was "
        "being written, e.g. out of memory) before it is dead-lettered with stage "
        "'crash_loop'; below writer_max_deliver.",
    )
    fault_exit_on_event_id: str | None = Field(
        default=None,
        description="Fault injection, for the fault-injection test suite only: a writer "
        "about to insert the event with this id ends its process at once (os._exit), as an "
        "out-of-memory kill would. Never set it in production.",
    )

    # --- readiness (/readyz) --------------------------------------------------------------
    ready_backlog_limit: int = Field(
        default=20_000, ge=1,
        description="Unwritten messages in the events stream (the writers' lag) above which "
        "/readyz answers 503.",
    )
    ready_heartbeat_stale_s: float = Field(
        default=5.0, ge=2.0,
        description="A writer loop whose last heartbeat (one a second) is older than this is "
        "reported dead or hung by /readyz.",
    )
    ready_check_timeout_s: float = Field(
        default=2.0, gt=0,
        description="How long /readyz waits for NATS and for the event store to answer.",
    )

    # --- trust in the control plane -------------------------------------------------------
    control_plane_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(required=True),
        description="Base URL of the control plane (e.g. 'https://cp.example.com') whose JWKS "
        "({url}/.well-known/jwks.json) and token exchange ({url}/v1/auth/token) this data plane "
        "trusts; unset makes `apiary up` run the control plane itself at <base URL>/cp.",
    )
    data_plane_id: str = Field(
        default="apiary-dp", pattern=r"^[A-Za-z0-9._:/-]{1,200}$",
        description="This data plane's id: the audience ('aud') every token it accepts must name "
        "exactly.",
    )
    jwt_issuer: str | None = Field(
        default=None,
        description="The 'iss' every accepted token must carry; unset means the control plane URL.",
    )
    bootstrap_token: SecretStr | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True),
        description="The one-time token from `apiary data-planes create` on the control plane: "
        "with it, and no identity yet in <data-dir>/dp-identity.json, the data plane generates its "
        "key pair and registers its public key at the control plane (federation). Used once; "
        "ignored once the identity exists.",
    )
    federation_endpoint: str | None = Field(
        default=None, pattern=r"^(https://)?[^\s/]+:[0-9]{1,5}$",
        description="host:port of the control plane's federation (gRPC) endpoint this federated "
        "data plane dials ('https://host:port': dial it with TLS); unset uses the one the "
        "control plane named at registration.",
    )
    federation_tls: bool = Field(
        default=False,
        description="Dial the federation endpoint with TLS even if the control plane did not say "
        "so at registration (it does when its endpoint serves TLS, and this data plane then "
        "always dials with TLS). A stream expected to be TLS never falls back to plaintext: a "
        "TLS failure is a connection error, retried with back-off.",
    )
    federation_tls_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA certificate(s) that verify the federation endpoint's "
        "certificate (a private CA). Unset: the system's trust store (SSL_CERT_FILE, else "
        "OpenSSL's default file), else gRPC's bundled roots.",
    )
    federation_reconnect_max_s: float = Field(
        default=5.0, gt=0,
        description="Longest wait between two attempts to reach an unreachable control plane "
        "(exponential back-off with full jitter below it), so the stream is back within seconds "
        "of the control plane's return. A control plane that refuses this data plane's identity "
        "is asked again only every 30 s.",
    )
    jwt_leeway_s: float = Field(
        default=30.0, ge=0, le=300,
        description="Clock skew tolerated when checking a token's exp, nbf and iat.",
    )
    jwks_max_age_s: float = Field(
        default=300.0, gt=0,
        description="How long the control plane's JWKS is used before it is fetched again.",
    )
    jwks_refetch_cooldown_s: float = Field(
        default=30.0, ge=0,
        description="Least time between two JWKS fetches caused by tokens naming an unknown 'kid', "
        "so that forged kids cannot make the data plane hammer the control plane.",
    )
    auth_cache_max_s: float = Field(
        default=60.0, gt=0,
        description="Longest the data plane keeps the identity of an API key it exchanged at the "
        "control plane (never beyond the token's expiry): a revoked key stops working within this "
        "time.",
    )
    auth_negative_cache_s: float = Field(
        default=5.0, ge=0,
        description="How long a key the control plane refused is refused again without asking it.",
    )
    auth_stale_max_s: float = Field(
        default=3600.0, ge=0,
        description="On a federated data plane, how long after its last successful verification "
        "an API key keeps working while the control plane is unreachable (or answers 5xx/429): "
        "nobody can revoke a key through a control plane that is down. Never for a key the control "
        "plane refused or revoked. 0 turns it off (every request is 503 once auth_cache_max_s "
        "passed). At least auth_cache_max_s.",
    )
    auth_cache_entries: int = Field(
        default=20_000, ge=1,
        description="Most API keys, and most tokens, whose verification one replica remembers "
        "(each about 1 KB); the least recently used are forgotten first.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins (scheme://host[:port], comma-separated, exact) of web UIs allowed to "
        "call this data plane from a browser: the control plane's origin when it serves the web UI "
        "from another origin. Each gets a CORS grant for bearer-token requests (never cookies); "
        "any other origin gets none. Empty: none (`apiary up` serves both planes from one "
        "origin).",
    )
    admin_token: SecretStr | None = Field(
        default=None, min_length=32, json_schema_extra=on_cluster(secret=True),
        description="The operator's credential for the data plane's admin API "
        "(/v1/admin/dead-letters, /v1/admin/ingest/stats), sent as 'Authorization: Bearer "
        "<token>'; at least 32 "
        "characters (e.g. `openssl rand -base64 32`). No API key or token of the control plane "
        "is ever an admin. Unset: the admin API answers 403 and `apiary dlq` (on a host with the "
        "data directory or the object store's credentials) is the way to dead letters.",
    )

    # --- the data plane's metadata --------------------------------------------------------
    dp_database_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True, required=True),
        description="SQLAlchemy URL of the data plane's metadata database (dpdb: datasets, "
        "datapoints, experiment runs), e.g. 'postgresql+psycopg://user:pass@pg:5432/apiary_dp' (a "
        "database of its own, never the control plane's); unset uses the SQLite file "
        "<data-dir>/dp.sqlite.",
    )

    # --- LLM proxy and human review -------------------------------------------------------
    dp_envelope_key: SecretStr | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True, required=True),
        description="Base64 (url-safe) of 32 random bytes: the AES-256-GCM key that wraps the "
        "per-credential keys encrypting LLM provider keys in dpdb (never the control plane's key). "
        "Unset: generated once into <data-dir>/dp-envelope.key (mode 0600), which only works while "
        "dpdb is the embedded SQLite file; required with APIARY_DP_DATABASE_URL.",
    )
    proxy_timeout_s: float = Field(
        default=120.0, gt=0, le=3600,
        description="Longest the LLM proxy waits for a provider (a request may ask for less); past "
        "it the caller gets 504.",
    )
    review_fill_interval_s: float = Field(
        default=30.0, gt=0,
        description="How often annotation queues with rules are filled with newly matching events.",
    )
    review_fill_lookback_s: float = Field(
        default=600.0, ge=0,
        description="How far before the previous fill a fill looks again (by event start time), so "
        "that events stored late still reach rule-filled queues.",
    )

    # --- ingestion rate limits ------------------------------------------------------------
    ingest_rate_limit_per_s: float = Field(
        default=1000.0, gt=0,
        description="Ingestion requests per second one credential may sustain; beyond it callers "
        "get 429 with Retry-After.",
    )
    ingest_rate_limit_burst: int = Field(
        default=2000, ge=1,
        description="Ingestion requests one credential may send at once above its sustained rate "
        "(the token bucket's size).",
    )

    # --- Python metric sandbox (apiary.dataplane.evaluation.sandbox) ----------------------
    sandbox_pool_size: int = Field(
        default=1, ge=1, le=64,
        description="Worker processes one evaluator keeps for Python metrics (metrics it runs at "
        "once).",
    )
    sandbox_pool_max_size: int = Field(
        default=4, ge=1, le=64,
        description="Most worker processes one evaluator's sandbox grows to while Python metric "
        "evaluations wait for a worker (at least APIARY_SANDBOX_POOL_SIZE); it shrinks back "
        "when none wait.",
    )
    sandbox_cpu_s: int = Field(
        default=5, ge=1, le=600,
        description="CPU seconds one metric evaluation may use (RLIMIT_CPU; the kernel ends the "
        "worker past it).",
    )
    sandbox_timeout_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="Wall-clock seconds one metric evaluation may take before its worker is killed "
        "and replaced.",
    )
    sandbox_memory_mb: int = Field(
        default=512, ge=16,
        description="Address space (RLIMIT_AS) a metric may add on top of its worker's preloaded "
        "libraries, in MiB; the event being scored counts against it.",
    )
    sandbox_max_open_files: int = Field(
        default=16, ge=8, le=1024,
        description="Open file descriptors a worker may hold (RLIMIT_NOFILE).",
    )
    sandbox_max_code_bytes: int = Field(
        default=64 * 1024, ge=256, le=4 * MiB,
        description="Largest metric source accepted, in bytes (UTF-8).",
    )
    sandbox_max_output_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * MiB,
        description="Largest result (score, explanation, extras, printed output) one evaluation "
        "may return, in bytes; above it the evaluation fails.",
    )
    sandbox_max_jobs_per_worker: int = Field(
        default=1000, ge=1,
        description="Evaluations one worker process serves before it is replaced by a fresh one "
        "(1: a new process for every evaluation). Workers never serve two isolation keys "
        "(projects).",
    )
    sandbox_uid: int = Field(
        default=65534, ge=1,
        description="Unprivileged user (and group) id that workers switch to when Apiary runs as "
        "root; ignored otherwise (65534 is 'nobody').",
    )
    sandbox_allow_degraded_isolation: bool = Field(
        default=False,
        description="Run metrics even when the kernel refuses part of the OS isolation (network "
        "namespace, seccomp, Landlock); otherwise the sandbox refuses to start.",
    )

    # --- evaluation service and pool scaling (apiary.dataplane.evaluation, .scaling) ------
    evaluator_min: int = Field(
        default=1, ge=0,
        description="Fewest evaluator actors (consumers of the evaluation stream); the pool never "
        "shrinks below it.",
    )
    evaluator_max: int = Field(
        default=2, ge=1,
        description="Most evaluator actors the pool grows to on queue depth (at least "
        "APIARY_EVALUATOR_MIN).",
    )
    evaluator_concurrency: int = Field(
        default=16, ge=1, le=256,
        description="Tasks one evaluator works on at once: most of a task's time is spent waiting "
        "(JetStream, an LLM judge); Python metrics also wait for one of its "
        "APIARY_SANDBOX_POOL_SIZE sandbox workers.",
    )
    evaluator_metric_concurrency: int = Field(
        default=1, ge=1, le=256,
        description="Tasks of one metric (in one project) one evaluator works on at once; the "
        "evaluator takes the tasks of different metrics in turn, so a metric with a slow "
        "backlog cannot hold every slot.",
    )
    evaluator_max_held_tasks: int = Field(
        default=1000, ge=1,
        description="Tasks one evaluator takes from the queue and holds (kept alive) while they "
        "wait their metric's turn; past it, it fetches no more.",
    )
    evaluator_breaker_failures: int = Field(
        default=5, ge=1,
        description="Evaluations of one metric that fail in a row (errors, timeouts, limits) "
        "before the metric is paused for its project: its tasks are skipped until "
        "POST /v1/metrics/{id}/resume.",
    )
    evaluator_breaker_ttl_s: float = Field(
        default=1.0, gt=0,
        description="How long an evaluator uses a metric's breaker state before reading it again "
        "(a resume takes effect within this time).",
    )
    evaluator_backlog_per_actor: int = Field(
        default=50, ge=1,
        description="Evaluation tasks waiting or in progress (JetStream pending + unacknowledged) "
        "per evaluator that the scaler aims for: the pool grows when the backlog exceeds this "
        "times its size.",
    )
    writer_max: int | None = Field(
        default=None, ge=1,
        description="Most writer actors when the writer pool scales on queue depth; "
        "APIARY_WRITER_COUNT writers always run. Unset: exactly APIARY_WRITER_COUNT.",
    )
    writer_backlog_per_actor: int = Field(
        default=1000, ge=1,
        description="Unwritten messages in the events stream per writer that the scaler aims for "
        "(with APIARY_WRITER_MAX).",
    )
    scale_interval_s: float = Field(
        default=2.0, gt=0,
        description="How often the pool scalers read their consumer's backlog.",
    )
    scale_up_delay_s: float = Field(
        default=10.0, ge=0,
        description="How long a pool must have wanted more actors before it grows (to the least it "
        "wanted during that time).",
    )
    scale_down_delay_s: float = Field(
        default=60.0, ge=0,
        description="How long a pool must have wanted fewer actors before it shrinks (to the most "
        "it wanted during that time); removed actors finish their work first.",
    )
    evaluator_definitions_ttl_s: float = Field(
        default=5.0, gt=0,
        description="How long a writer uses a project's online evaluators before reading them "
        "again: a deployed, changed or disabled metric takes effect within this time (at most 1 s "
        "on a federated data plane, where the control plane pushes metrics).",
    )
    evaluator_ledger_ttl_s: float = Field(
        default=86_400.0, gt=0,
        description="How long the ids of scored evaluation tasks are remembered, so that a task "
        "queued again after JetStream's duplicate window is not scored twice.",
    )
    evaluator_judge_url: str | None = Field(
        default=None,
        description="Base URL of the OpenAI-compatible API that LLM-judge metrics call "
        "({url}/chat/completions); unset: this data plane's LLM proxy, called in-process as the "
        "scored event's tenant (its workspace's provider key).",
    )
    evaluator_judge_api_key: SecretStr | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True),
        description="Bearer credential evaluators send to the judge API (for the LLM proxy: a key "
        "allowed to use it).",
    )
    evaluator_judge_model: str = Field(
        default="gpt-4o-mini", min_length=1,
        description="Model an LLM-judge metric uses when it names none.",
    )
    evaluator_judge_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Longest one judge call may take before it is retried later.",
    )

    # --- notifications (apiary.dataplane.notifications) -----------------------------------
    notifier_count: int = Field(
        default=1, ge=0,
        description="Notifier actors delivering the `notifications` stream (email, Slack, "
        "webhooks); 0 starts none.",
    )
    notify_max_age_s: float = Field(
        default=3600.0, gt=0,
        description="How long a notification is retried (connection errors, 408, 429, 5xx) after "
        "it was queued; a delivery still failing then goes to the dead-letter store.",
    )
    notify_retry_base_s: float = Field(
        default=1.0, gt=0,
        description="First back-off of a failed delivery; each retry waits a random time up to "
        "twice the previous bound (full jitter), at most notify_retry_max_s, or the receiver's "
        "Retry-After.",
    )
    notify_retry_max_s: float = Field(
        default=300.0, gt=0,
        description="Longest back-off between two attempts at one delivery (unless the receiver's "
        "Retry-After asks for longer).",
    )
    notify_timeout_s: float = Field(
        default=10.0, gt=0,
        description="Longest one delivery attempt (an HTTP request, an SMTP or SES send) may take.",
    )
    notify_smtp_url: SecretStr | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True),
        description="SMTP server the data plane sends alert mail through (an email channel may "
        "name its own): 'smtp://host:port', 'smtp+starttls://user:pass@host:port' or "
        "'smtps://user:pass@host:port'. The data plane's own, never the control plane's "
        "smtp_url: the planes share no credentials.",
    )
    notify_smtp_from: str = Field(
        default="Apiary <alerts@localhost>", min_length=3, max_length=320,
        description="From address of the alert mail the data plane sends.",
    )
    ses_region: str | None = Field(
        default=None,
        description="AWS region of Amazon SES: set, email channels without an SMTP URL of their "
        "own send through SES (boto3; credentials from the usual AWS_* variables) instead of "
        "notify_smtp_url.",
    )
    ses_endpoint_url: str | None = Field(
        default=None,
        description="SES endpoint for an SES-compatible server; unset uses AWS's.",
    )

    # --- alerts (apiary.dataplane.alerts) ---------------------------------------------------
    alert_interval_s: int = Field(
        default=60,
        description="How often the alert evaluator measures every alert rule of the projects "
        "this data plane serves, in seconds (at least 5); each evaluation covers the rule's "
        "window ending on this grid.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_cors_origins(cls, value: object) -> object:
        items = comma_separated(value)
        if items is None:
            return value
        origins: list[str] = []
        for item in items:
            entry = str(item).strip()
            if not entry:
                continue
            parts = urlsplit(entry)
            if parts.scheme not in ("http", "https") or not parts.netloc or entry != (
                    f"{parts.scheme}://{parts.netloc}"):
                raise ValueError(f"{item!r} is not an origin such as 'https://apiary.example.com'"
                                 " (scheme://host[:port], no path, no '*')")
            if "*" in entry:
                raise ValueError(f"{item!r}: origins are exact, no wildcards")
            origins.append(entry)
        return tuple(origins)

    @field_validator("alert_interval_s")
    @classmethod
    def _alert_interval(cls, value: int) -> int:
        if value < 5:
            raise ValueError(
                f"{value} s is too short: alert rules are evaluated at most every 5 s (each "
                "evaluation queries ClickHouse once per rule); set APIARY_ALERT_INTERVAL_S=5 "
                "or more")
        return value

    @field_validator("federation_tls_ca_file")
    @classmethod
    def _federation_ca(cls, value: Path | None) -> Path | None:
        return None if value is None else pem_certificates(value, "federation TLS CA file")

    @field_validator("jetstream_key")
    @classmethod
    def _base64_jetstream_key(cls, value: SecretStr | None) -> SecretStr | None:
        # nats-server reads the key in its config syntax: base64 needs no quoting there.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9+/=_-]+", value.get_secret_value()):
            raise ValueError("must be base64 (letters, digits, + / = _ -)")
        return value

    @model_validator(mode="after")
    def _crash_loop_below_max_deliver(self) -> DataPlaneSettings:
        # A crash-looping message is dead-lettered on its (limit + 1)-th delivery, which
        # must come before JetStream gives up on it.
        if self.writer_crash_loop_limit >= self.writer_max_deliver:
            raise ValueError(
                f"writer_crash_loop_limit ({self.writer_crash_loop_limit}) must be below "
                f"writer_max_deliver ({self.writer_max_deliver})")
        return self

    @model_validator(mode="after")
    def _stale_cap_beyond_cache_cap(self) -> DataPlaneSettings:
        if 0 < self.auth_stale_max_s < self.auth_cache_max_s:
            raise ValueError(
                f"auth_stale_max_s ({self.auth_stale_max_s}) must be 0 (off) or at least "
                f"auth_cache_max_s ({self.auth_cache_max_s})")
        return self

    @property
    def federated(self) -> bool:
        """Whether this data plane has (or is to register) a federation identity: an identity
        file in the data dir, or a ``bootstrap_token``."""
        return self.bootstrap_token is not None or (self.data_dir / "dp-identity.json").exists()

    @property
    def embedded_clickhouse(self) -> bool:
        """Whether the event store is chDB under the data dir (no ``clickhouse_url``)."""
        return self.clickhouse_url is None

    @property
    def embedded_nats(self) -> bool:
        """Whether Apiary starts its own nats-server (no ``nats_url``)."""
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
    def judge_url(self) -> str:
        """The OpenAI-compatible base URL LLM judges call: ``evaluator_judge_url``, else the
        data plane's LLM proxy."""
        return self.evaluator_judge_url or f"{self.base_url}/v1"

    @property
    def otlp_grpc_endpoint(self) -> str | None:
        """``host:port`` of the OTLP/gRPC receiver on this host (a wildcard listen address
        becomes 127.0.0.1), or ``None`` when ``otlp_grpc_port`` is 0."""
        if not self.otlp_grpc_port:
            return None
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"[{host}]:{self.otlp_grpc_port}" if ":" in host else f"{host}:{self.otlp_grpc_port}"
