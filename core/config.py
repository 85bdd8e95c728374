"""Settings read from ANBU_* environment variables; nothing is read at import time."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.crypto import key_problem

# Secrets that shipped as defaults (public in this repository): never good enough to serve with.
KNOWN_DEFAULT_SECRETS = frozenset(
    {"change-me-in-production", "anbu-dev-auth-token", "change-me", "ingest-dev-password"}
)
SECRET_MIN_LENGTH = {"session_secret": 32, "twilio_auth_token": 32, "mqtt_password": 16}
METRICS_TOKEN_MIN_LENGTH = 32
# Which role needs which secret: the web signs sessions and tokens and checks webhook
# signatures; ingest holds the broker session every gateway's readings wait in; web and worker
# open residents' sealed notes with the data key.
SECRETS_OF_ROLE = {
    "web": ("session_secret", "twilio_auth_token", "data_key"),
    "ingest": ("mqtt_password",),
    "worker": ("data_key",),
}


class Settings(BaseSettings):
    """Every knob of anbu; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="ANBU_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN; unset means `anbu demo` starts an embedded server.",
    )
    db_pool_min: int = Field(default=1, description="Smallest connection pool size.")
    db_pool_max: int = Field(default=8, description="Largest connection pool size.")

    mqtt_host: str = Field(default="127.0.0.1", description="MQTT broker host.")
    mqtt_port: int = Field(default=1883, description="MQTT broker port.")
    mqtt_username: str = Field(
        default="ingest",
        description="MQTT user of the ingest service; {replica} in it becomes ANBU_INGEST_REPLICA "
        "(production: one broker account per replica, bound to its client id).",
    )
    mqtt_password: str = Field(default="ingest-dev-password", description="Its password.")
    mqtt_client_id: str = Field(
        default="anbu-ingest-1",
        description="Client id (ANBU_INGEST_REPLICA is added to it per replica): the broker "
        "keeps this persistent session across restarts.",
    )
    ingest_replicas: int = Field(
        default=1,
        description="How many ingest workers share the broker. Above 1, each needs "
        "ANBU_INGEST_REPLICA (or its own ANBU_MQTT_CLIENT_ID): with the default client id they "
        "would take each other's session on every reconnect, so ingest refuses to start.",
    )
    ingest_replica: str = Field(
        default="",
        description="This worker's stable name among them (a StatefulSet ordinal, a systemd "
        "instance, `@host` for the host name), added to ANBU_MQTT_CLIENT_ID: each worker keeps "
        "its own persistent session across its restarts.",
    )
    ingest_inbox_max: int = Field(
        default=10000,
        description="Messages received and not yet handed to storing, at most. Past it, QoS 0 "
        "messages are dropped and counted (anbu_ingest_dropped_total); QoS 1/2 ones, which the "
        "broker redelivers until acknowledged, are never dropped: reading pauses instead.",
    )
    ingest_clock_sync_s: float = Field(
        default=300.0,
        description="Seconds between readings of the database's clock, against which ingest "
        "stamps receipt and judges 'in the future' (the monotonic clock carries it between), so "
        "a step of the ingest host's wall clock changes neither.",
    )
    mqtt_shared_group: str = Field(
        default="",
        description="Empty (the default): plain subscriptions, which Mosquitto 2.0 keeps across "
        "its restarts: one worker subscribes gw/+/#, several (ANBU_INGEST_REPLICAS above 1) "
        "each their own share of the registered gateways (ingest.shares). A group name: one "
        "shared subscription ($share/<group>/...) instead, which Mosquitto 2.0 forgets when it "
        "restarts (what gateways publish before the workers subscribe again reaches nobody).",
    )
    mqtt_protocol: int = Field(
        default=5,
        description="5 (MQTT 5, shared subscription) or 4 (MQTT 3.1.1, for brokers without v5).",
    )
    mqtt_session_expiry_s: int = Field(
        default=86400, description="How long the broker keeps the session while ingest is away."
    )
    mqtt_tls_ca: str | None = Field(
        default=None,
        description="CA file (PEM) that signed the broker's certificate; set: ingest connects "
        "over TLS (the broker's services listener, 8884 in mosquitto.conf).",
    )
    mqtt_tls_cert: str | None = Field(
        default=None,
        description="Ingest's client certificate (PEM) for the broker's mutual-TLS listener.",
    )
    mqtt_tls_key: str | None = Field(
        default=None, description="The private key (PEM) of that client certificate."
    )
    broker_admin_username: str | None = Field(
        default=None,
        description="The broker's dynamic-security admin (`mosquitto_ctrl dynsec init`), with "
        "which anbu issues, replaces and revokes gateways' MQTT accounts at once; unset: no "
        "gateway can be enrolled and revocations are recorded as pending.",
    )
    broker_admin_password: str | None = Field(default=None, description="Its password.")
    gateway_broker_url: str | None = Field(
        default=None,
        description="Where gateways connect, shown with the credentials anbu issues them "
        "(mqtts://mqtt.example.kr:8883: the broker's gateways' TLS listener); unset: "
        "ANBU_MQTT_HOST and ANBU_MQTT_PORT.",
    )

    twilio_account_sid: str = Field(
        default="AC00000000000000000000000000000000", description="Twilio account SID."
    )
    twilio_auth_token: str = Field(
        default="anbu-dev-auth-token", description="Twilio auth token; also signs webhooks."
    )
    twilio_api_base_url: str | None = Field(
        default=None,
        description="Override of https://api.twilio.com (the local phone network in demo/tests).",
    )
    twilio_from_number: str = Field(default="+82215880000", description="Caller id for calls/SMS.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="URL at which Twilio reaches anbu's webhooks (must match for signatures).",
    )

    web_host: str = Field(default="127.0.0.1", description="Dashboard/API bind address.")
    web_port: int = Field(default=8000, description="Dashboard/API port.")
    session_secret: str = Field(
        default="change-me-in-production", description="Key signing the dashboard's session cookie."
    )
    session_lifetime_hours: float = Field(
        default=12.0,
        description="A dashboard session and an API token end this long after the login, "
        "however busy (absolute, not sliding); logout and a password change end them at once.",
    )
    session_cookie_secure: bool | None = Field(
        default=None,
        description="Mark the session cookie Secure (sent over https only); unset: on whenever "
        "ANBU_PUBLIC_BASE_URL is https://, i.e. everywhere but the demo. It is always HttpOnly "
        "and SameSite=Lax.",
    )
    login_max_failures: int = Field(
        default=5,
        description="Failed logins (wrong password or TOTP code) for one account name, known or "
        "not, from one client address within 15 minutes that lock that name out from that "
        "address for ANBU_LOGIN_LOCKOUT_S (the owner elsewhere is not locked out; a name is "
        "only capped at 30 checks a minute from all addresses together).",
    )
    login_address_max_failures: int = Field(
        default=20,
        description="Failed logins from one client address within 15 minutes that lock that "
        "address out the same way.",
    )
    login_lockout_s: float = Field(
        default=300.0,
        description="The first lockout's length; each further one in a row lasts twice as "
        "long, at most a day. Stored in the database, so all web replicas agree.",
    )
    data_key: str = Field(
        default="",
        description="Key sealing residents' health and access notes at rest (AES-256-GCM): 32 "
        "random bytes as 64 hex digits or base64 (`anbu keys new`). Required by `serve web` and "
        "`serve worker`; `anbu keys rotate` re-seals every note under it.",
    )
    data_keys_old: str = Field(
        default="",
        description="Earlier data keys, comma-separated: they still open what they sealed until "
        "`anbu keys rotate` has re-sealed it under ANBU_DATA_KEY.",
    )
    metrics_timeout_s: float = Field(
        default=2.0,
        description="Longest wait for a connection and for each query when the web app's "
        "/metrics reads the database; past it the scrape reports anbu_metrics_database_up 0.",
    )
    ingest_metrics_port: int | None = Field(
        default=None,
        description="Port on which `anbu serve ingest` serves its counters at /metrics for "
        "Prometheus; unset: not served.",
    )
    ingest_metrics_host: str = Field(
        default="127.0.0.1", description="Bind address of those ingest counters."
    )
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token Prometheus must send for the web app's /metrics (at least 32 "
        "characters); unset: /metrics on the web port answers 403, and `serve web` refuses to "
        "start unless ANBU_WEB_METRICS_PORT serves them on an internal port instead.",
    )
    web_metrics_port: int | None = Field(
        default=None,
        description="Internal port on which `anbu serve web` also serves /metrics, bound to "
        "ANBU_WEB_METRICS_HOST, for a Prometheus on the host or the internal network (it asks "
        "for ANBU_METRICS_TOKEN only when that is set); unset: not served.",
    )
    web_metrics_host: str = Field(
        default="127.0.0.1", description="Bind address of that internal metrics port."
    )
    web_max_body_bytes: int = Field(
        default=65536,
        description="Largest request body the web app reads (login, token, API, Twilio "
        "webhooks); a larger one, announced or streamed, is refused with 413 before parsing.",
    )
    webhook_replay_window_s: float = Field(
        default=86400.0,
        description="A signed Twilio webhook received again (same URL and body) within this "
        "many seconds is answered as the first time and changes nothing (each web instance "
        "remembers its last 20000).",
    )
    event_webhooks_allow_loopback: bool = Field(
        default=False,
        description="Let event webhook subscriptions target loopback addresses (http allowed "
        "there): tests and the demo only. Private and link-local addresses are refused always.",
    )
    event_webhooks_timeout_s: float = Field(
        default=10.0, description="Seconds an event webhook receiver has to answer each POST."
    )
    event_webhooks_pause_after_hours: float = Field(
        default=72.0,
        description="An event webhook subscription failing this long is paused until an admin "
        "resumes it.",
    )
    event_webhooks_log_days: int = Field(
        default=90,
        ge=1,
        description="Days a delivered (or cancelled) event webhook delivery and its attempts "
        "are kept in the delivery log; the nightly job deletes older ones. Pending ones stay.",
    )

    inactivity_watch_hours: float = Field(
        default=6.0, description="관심 (watch) after this silence."
    )
    inactivity_warning_hours: float = Field(default=12.0, description="주의 (warning) after this.")
    inactivity_critical_hours: float = Field(
        default=24.0, description="심각 (critical) after this."
    )
    inactivity_open_hold_hours: float = Field(
        default=12.0,
        description="In the offline replay (`anbu detect`, eval-detection), an open interval (a 1 "
        "without its 0: motion, mat, door left open) in a home still in grace counts as activity "
        "for at most this long; then the silence clock starts. Live, and past grace, the learned "
        "hold per sensor applies.",
    )
    future_tolerance_s: int = Field(
        default=300, description="Readings stamped further in the future are dead-lettered."
    )
    dead_letter_max_payload_bytes: int = Field(
        default=16384, description="A refused message's payload is kept up to this many bytes."
    )
    dead_letter_per_gateway_per_hour: int = Field(
        default=1000,
        description="Refused messages kept per gateway and hour; the rest are only counted.",
    )
    dead_letter_retention_days: int = Field(
        default=30, description="Refused messages and their hourly counts are deleted after this."
    )
    retention_days_after_end: int = Field(
        default=1825,
        ge=1,
        description="Days after a resident's service ended before their personal data (name, "
        "phones, address, contacts, notes) is pseudonymised; statistics stay. 5 years, as "
        "social-welfare records are commonly kept; the district sets its own.",
    )

    call_retries: int = Field(default=2, description="Check-in call retries when unanswered.")
    call_retry_minutes: float = Field(default=10.0, description="Minutes between those retries.")
    call_ring_timeout_s: int = Field(default=30, description="Seconds a check-in call rings.")
    call_watchdog_s: float = Field(
        default=180.0,
        description=(
            "A call with no final status this long after it was dialled counts as unanswered; "
            "one held in the send queue for 3 times this is given up and escalated."
        ),
    )
    ack_timeout_minutes: float = Field(
        default=30.0, description="Unacknowledged alerts are re-notified after this."
    )
    button_cancel_grace_s: float = Field(
        default=120.0,
        description=(
            "A cancel press within this many seconds of an emergency button's press turns its "
            "alert into a check-in call; a later cancel is only noted on the alert."
        ),
    )

    # -- calls issue: the send queue, routine check-ins, the 돌봄콜 line ---------------------
    call_cps: float = Field(
        default=1.0, description="Calls per second the Twilio account allows (shared by workers)."
    )
    call_burst_s: float = Field(
        default=1.0, description="Seconds of calls-per-second budget that may be spent at once."
    )
    call_inline_wait_s: float = Field(
        default=2.0,
        description="How long an alert's check-in call waits for a token before the queue "
        "drainer takes it instead.",
    )
    call_dial_workers: int = Field(default=8, description="Concurrent REST requests when dialling.")
    call_queue_poll_s: float = Field(
        default=1.0, description="Seconds between runs of the queue drainer job."
    )
    checkin_retries: int = Field(
        default=2, description="Routine check-in retries when unanswered (busy, voicemail, ...)."
    )
    checkin_unclear_retries: int = Field(
        default=1, description="Routine check-in retries after an unclear answer."
    )
    checkin_retry_minutes: float = Field(
        default=10.0, description="Minutes between routine check-in retries."
    )
    checkin_unreached_streak: int = Field(
        default=3, description="Unreached routine check-ins in a row that alert the care manager."
    )
    checkin_tick_s: float = Field(
        default=30.0, description="Seconds between routine check-in scheduler ticks."
    )
    caller_name_ko: str = Field(
        default="구청 통합돌봄센터",
        description="Who the resident hears is calling, first on every check-in call and "
        "voicemail (older people hang up on unknown callers): the programme's centre, e.g. "
        "광산구 통합돌봄센터.",
    )
    caller_name_en: str = Field(
        default="the district's integrated care centre",
        description="caller_name_ko for residents who chose English.",
    )
    conversation_script: str = Field(
        default="",
        description="The routine call's conversation (questions on meals, sleep, pain, mood and "
        "needs) as a TOML file in the shape of calls/data/conversation_ko.toml; empty: the "
        "shipped one.",
    )
    city_contact_ko: str = Field(
        default="지역 콜센터 120",
        description="What unknown callers to the 돌봄콜 line are told to call instead.",
    )

    sweep_interval_s: float = Field(default=60.0, description="Seconds between detector sweeps.")
    due_poll_s: float = Field(default=2.0, description="Seconds between polls for due alert work.")
    timezone: str = Field(default="Asia/Seoul", description="Time zone shown to people.")

    def unsafe_secrets(self, roles: tuple[str, ...] = ("web",)) -> list[str]:
        """The secret settings of `roles` that are missing, too short, of a single repeated
        character or a value published with anbu, with why (names and reasons only, never the
        values)."""
        out = []
        names = [n for role in roles for n in SECRETS_OF_ROLE.get(role, ())]
        for name in names:
            value = str(getattr(self, name) or "")
            env = f"ANBU_{name.upper()}"
            if name == "data_key":
                problem = key_problem(value, env)
                out += [problem] if problem else []
                continue
            minimum = SECRET_MIN_LENGTH[name]
            if value in KNOWN_DEFAULT_SECRETS:
                out.append(f"{env}: the published default; anyone could use it")
            elif len(value) < minimum:
                out.append(f"{env}: {len(value)} characters, at least {minimum} needed")
            elif len(set(value)) < 4:
                out.append(f"{env}: too few different characters to be secret")
        return out

    def metrics_exposure(self) -> list[str]:
        """Why `serve web` must not start as configured: /metrics on the public web port with
        no usable ANBU_METRICS_TOKEN (per-dong counts of silent and away homes), unless they
        are served on an internal port (ANBU_WEB_METRICS_PORT) instead; empty when safe."""
        token = self.metrics_token
        if token is None:
            if self.web_metrics_port is not None:
                return []
            return [
                "ANBU_METRICS_TOKEN: unset, and /metrics would be on the web port; set it "
                "(Prometheus sends it as a bearer token) or ANBU_WEB_METRICS_PORT"
            ]
        if token in KNOWN_DEFAULT_SECRETS or len(token) < METRICS_TOKEN_MIN_LENGTH:
            return [f"ANBU_METRICS_TOKEN: at least {METRICS_TOKEN_MIN_LENGTH} characters needed"]
        if len(set(token)) < 4:
            return ["ANBU_METRICS_TOKEN: too few different characters to be secret"]
        return []
