"""Settings: one frozen object, read once, that says where the lake lives.

The backend is a configuration value (a discriminated union on ``kind``), never an ``if``
scattered in the code. Environment variables use the prefix ``LAKEOPS_`` and ``__`` for
nesting, e.g. ``LAKEOPS_STORAGE__KIND=s3 LAKEOPS_STORAGE__ENDPOINT=http://127.0.0.1:9000``.
An optional TOML file (``LAKEOPS_CONFIG=path``, or ``lakeops.toml`` in the working directory)
is read below the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from catalog.objects import LocalObjectStore, ObjectStore, S3ObjectStore
from catalog.versions import OBJECT_CATALOG_IMPL


def default_home() -> Path:
    """``$LAKEOPS_HOME``, or ``./.lakeops`` of the working directory."""
    return Path(os.environ.get("LAKEOPS_HOME") or Path.cwd() / ".lakeops").absolute()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LocalStorageConfig(_Frozen):
    """A ``file://`` warehouse on the local disk (the embedded default)."""

    kind: Literal["local"] = "local"
    root: Path | None = Field(default=None, description="Warehouse directory; default <home>/warehouse.")
    artifacts_root: Path | None = Field(default=None, description="Artifact directory; default <home>/artifacts.")

    def open_objects(self, home: Path) -> ObjectStore:
        """The artifact object store."""
        return LocalObjectStore(self.artifacts_root or home / "artifacts")

    def warehouse(self, home: Path) -> str:
        """The warehouse location as a URI."""
        return (self.root or home / "warehouse").absolute().as_uri()

    def open_filesystem(self) -> Any:
        """A pyarrow filesystem over data already in the store (``s3://`` URIs): none on local storage."""
        return None

    def to_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties."""
        return {}

    def client_properties(self) -> dict[str, str]:
        """FileIO properties an outside engine may be told (no secrets): none for a local warehouse."""
        return {}


class S3StorageConfig(_Frozen):
    """An ``s3://`` warehouse on any S3-compatible endpoint (MinIO, SeaweedFS, AWS)."""

    kind: Literal["s3"] = "s3"
    endpoint: str | None = Field(default=None, description="e.g. http://127.0.0.1:9000; None for AWS.")
    bucket: str
    prefix: str = "lakeops"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    region: str = "us-east-1"
    path_style: bool = True
    artifacts_bucket: str | None = Field(default=None, description="Bucket for artifacts; default the warehouse's.")
    direct_transfers: bool = Field(
        default=True,
        description="Let clients move artifact bytes straight to and from the store (presigned multipart URLs); "
        "the store's endpoint must then be reachable from them.",
    )
    hash_staged_uploads: bool = Field(
        default=True,
        description="Hash the stock mlflow client's multipart uploads in the background and file them under "
        "their content address (false: leave it to another replica sharing the lake).",
    )

    def open_objects(self, home: Path) -> ObjectStore:  # noqa: ARG002 - same signature as LocalStorageConfig
        """The artifact object store: blobs under <prefix>/blobs, pre-blob objects under <prefix>/artifacts."""
        return S3ObjectStore(
            endpoint=self.endpoint or f"https://s3.{self.region}.amazonaws.com",
            bucket=self.artifacts_bucket or self.bucket,
            prefix=f"{self.prefix.strip('/')}/artifacts".lstrip("/"),
            blob_prefix=f"{self.prefix.strip('/')}/blobs".lstrip("/"),
            direct_transfers=self.direct_transfers,
            access_key=self.access_key_id,
            secret_key=self.secret_access_key.get_secret_value() if self.secret_access_key else None,
            region=self.region,
        )

    def open_filesystem(self) -> Any:
        """A pyarrow filesystem over ``s3://`` data on this endpoint, with the lake's credentials."""
        from pyarrow.fs import S3FileSystem

        endpoint = self.endpoint or f"https://s3.{self.region}.amazonaws.com"
        return S3FileSystem(
            access_key=self.access_key_id,
            secret_key=self.secret_access_key.get_secret_value() if self.secret_access_key else None,
            region=self.region,
            endpoint_override=endpoint.split("://", 1)[-1].rstrip("/"),
            scheme="https" if endpoint.startswith("https://") else "http",
            force_virtual_addressing=not self.path_style,
        )

    def warehouse(self, home: Path) -> str:  # noqa: ARG002 - same signature as LocalStorageConfig
        """The warehouse location as a URI."""
        return f"s3://{self.bucket}/{self.prefix.strip('/')}" if self.prefix.strip("/") else f"s3://{self.bucket}"

    def client_properties(self) -> dict[str, str]:
        """FileIO properties an outside engine may be told: where the store is, never its keys."""
        return {k: v for k, v in self.to_properties().items() if k in _PUBLIC_S3_PROPERTIES}

    def to_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties: the only place that spells pyiceberg's s3 keys."""
        props = {"s3.region": self.region, "s3.force-virtual-addressing": str(not self.path_style).lower()}
        if self.endpoint:
            props["s3.endpoint"] = self.endpoint
        if self.access_key_id:
            props["s3.access-key-id"] = self.access_key_id
        if self.secret_access_key:
            props["s3.secret-access-key"] = self.secret_access_key.get_secret_value()
        return props


_PUBLIC_S3_PROPERTIES = frozenset({"s3.endpoint", "s3.region", "s3.force-virtual-addressing"})


class SqlCatalogConfig(_Frozen):
    """pyiceberg's SQL catalog: SQLite (embedded default) or PostgreSQL."""

    kind: Literal["sql"] = "sql"
    uri: str | None = Field(default=None, description="SQLAlchemy URI; default sqlite:///<home>/catalog.db.")

    def to_properties(self, home: Path) -> dict[str, str]:
        """pyiceberg catalog properties."""
        return {"type": "sql", "uri": self.uri or f"sqlite:///{home / 'catalog.db'}"}


class RestCatalogConfig(_Frozen):
    """Any Iceberg REST catalog (Polaris, Lakekeeper, Nessie, SeaweedFS, ...)."""

    kind: Literal["rest"] = "rest"
    uri: str
    warehouse: str | None = Field(default=None, description="Warehouse name or location the catalog expects.")
    credential: SecretStr | None = Field(default=None, description="OAuth2 client credentials 'id:secret'.")
    token: SecretStr | None = None
    oauth2_server_uri: str | None = Field(default=None, description="Token endpoint; default <uri>/v1/oauth/tokens.")

    def to_properties(self, home: Path) -> dict[str, str]:  # noqa: ARG002 - same signature as SqlCatalogConfig
        """pyiceberg catalog properties."""
        props = {"type": "rest", "uri": self.uri}
        if self.credential or self.oauth2_server_uri:
            props["oauth2-server-uri"] = self.oauth2_server_uri or f"{self.uri.rstrip('/')}/v1/oauth/tokens"
        if self.warehouse:
            props["warehouse"] = self.warehouse
        if self.credential:
            props["credential"] = self.credential.get_secret_value()
        if self.token:
            props["token"] = self.token.get_secret_value()
        return props


class ObjectCatalogConfig(_Frozen):
    """The object-store catalog: table pointers and namespaces as objects in the warehouse itself, no database.

    The default for ``s3://`` warehouses (see ``catalog/objectcatalog.py``). Commits use the store's
    conditional writes, so any number of processes on any number of hosts can share the lake.
    """

    kind: Literal["object"] = "object"

    def to_properties(self, home: Path) -> dict[str, str]:  # noqa: ARG002 - same signature as SqlCatalogConfig
        """pyiceberg catalog properties (the warehouse is added by the settings)."""
        return {"py-catalog-impl": OBJECT_CATALOG_IMPL}


StorageConfig = Annotated[LocalStorageConfig | S3StorageConfig, Field(discriminator="kind")]
CatalogConfig = Annotated[SqlCatalogConfig | RestCatalogConfig | ObjectCatalogConfig, Field(discriminator="kind")]


class WriteConfig(_Frozen):
    """Tuning of the durable, batched write path."""

    commit_interval_s: float = Field(default=0.5, gt=0, description="Group-commit period.")
    commit_max_rows: int = Field(default=200_000, gt=0, description="Commit early once this many rows wait.")
    traces_commit_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Group-commit period of the trace tables (spans, trace info, trace tags; at most: sooner past "
        "commit_max_rows). Spans arrive by the thousand and a round of these tables costs ~100-150 ms of CPU (a "
        "Parquet file per bucket of the spans table, three snapshots), so they wait for rounds this far apart; this "
        "process's reads merge the queued rows in, SQL commits them first, and the write-ahead log keeps them durable "
        "meanwhile. Other replicas see traces this much later.",
    )
    fsync: bool = Field(default=True, description="fsync the write-ahead log before acknowledging.")
    log: Literal["local", "object"] = Field(
        default="local",
        description="Where the write-ahead log lives: 'local' (<home>/wal, fsync'd) or 'object' (segments in the "
        "warehouse's object store, <warehouse>/_wal/<log_name>/: a replica's disk then holds nothing an "
        "acknowledgement depends on).",
    )
    log_name: str | None = Field(
        default=None,
        description="This replica's log in the object store (log='object'); default the host name. One process "
        "per name: a replacement with the same name replays it.",
    )
    log_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="With log='object': a replica renews the lease on its log every third of this; another replica "
        "takes over a log whose lease it has seen unrenewed this long and commits its rows (a replica that dies and "
        "never comes back loses nothing acknowledged).",
    )
    maintain_every_commits: int = Field(default=50, ge=0, description="Background maintenance period; 0 = never.")
    snapshot_retention_s: float = Field(default=3600.0, ge=0, description="Expire snapshots older than this.")
    max_snapshots: int = Field(
        default=50,
        ge=1,
        description="Keep at most this many snapshots per table: pyiceberg's commit cost grows with the count.",
    )
    run_checkpoints: bool = Field(
        default=True,
        description="Keep checkpoints of the runs' current state in the lake (_run_checkpoints/), so start-up "
        "reads O(runs) rows plus what was committed after the checkpoint instead of every change row.",
    )
    run_checkpoint_min_runs: int = Field(
        default=10_000, ge=0, description="Write run checkpoints only for lakes of at least this many runs."
    )
    run_checkpoint_every_s: float = Field(
        default=1800.0,
        ge=0,
        description="Maintenance writes a new run checkpoint once the newest is older than this (or would "
        "lose its snapshots to expiry).",
    )
    refresh_interval_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "How often to pick up other writers' commits; default 0.25 s where the catalog tells in one"
            " query which tables moved (SQLite), 2 s where each table must be loaded to know."
        ),
    )
    miss_wait_s: float | None = Field(
        default=None,
        ge=0,
        description="How long a read (GET) that finds no such run, experiment or model may wait for another "
        "replica's commit before answering 404: it refreshes from the catalog and tries again meanwhile. Default "
        "1 s with log='object' (replicas behind a load balancer), 0 (answer at once) with the local log.",
    )

    def miss_wait(self) -> float:
        """``miss_wait_s`` with its default resolved (1 s for replicas on the object-store log, else 0)."""
        if self.miss_wait_s is not None:
            return self.miss_wait_s
        return 1.0 if self.log == "object" else 0.0

    read_cache_rows: int = Field(default=2_000_000, ge=0, description="Committed metric rows kept hot for reads.")
    unhealthy_after_s: float = Field(
        default=30.0, gt=0, description="/health answers 503 once commits have failed (or hung) for this long."
    )


class RegistryConfig(_Frozen):
    """Model registry rules."""

    protected_aliases: list[str] = Field(
        default_factory=lambda: ["production"],
        description="Aliases a version gets only past the quality gate (or forced, with a reason).",
    )


class WebhooksConfig(_Frozen):
    """Webhook delivery: attempts per event and the backoff between them (doubling from the first)."""

    max_attempts: int = Field(default=5, ge=1, le=20, description="Attempts per delivery before it is failed.")
    first_backoff_s: float = Field(default=1.0, gt=0, description="Wait after the first failed attempt; doubles.")
    timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout of one attempt.")


class SqlConfig(_Frozen):
    """SQL for people and BI tools: the sandbox's limits and the PostgreSQL-wire endpoint's login."""

    timeout_s: float = Field(default=30.0, gt=0, description="A user statement is interrupted after this long.")
    max_rows: int = Field(default=100_000, gt=0, description="At most this many rows per answer (more: truncated).")
    memory_limit: str = Field(
        default="1GB",
        description="DuckDB memory_limit of user SQL, e.g. '2GB': a statement needing more stops with a clear error.",
    )
    pg_user: str = Field(default="lakeops", description="User name of the PostgreSQL-wire endpoint.")
    pg_password: SecretStr | None = Field(
        default=None, description="Password of the PostgreSQL-wire endpoint; required to serve it."
    )


class LimitsConfig(_Frozen):
    """The most bytes a request body may hold, per kind of route: counted as the body streams in."""

    json_body_bytes: int = Field(default=16 * 1024**2, gt=0, description="JSON requests (every other route).")
    dataframe_bytes: int = Field(default=256 * 1024**2, gt=0, description="Arrow tables sent to datasets.")
    ingest_bytes: int = Field(default=256 * 1024**2, gt=0, description="Bulk metric ingest (Arrow or NDJSON).")
    artifact_bytes: int = Field(default=64 * 1024**3, gt=0, description="One artifact uploaded through lakeops.")


class HttpConfig(_Frozen):
    """The HTTP service's edges."""

    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (e.g. https://notebooks.example.com) whose pages may call the API from a browser; "
        "none by default (CORS closed).",
    )


class TlsConfig(_Frozen):
    """TLS of the HTTP service and the PostgreSQL endpoint: a PEM certificate (chain) and its private key."""

    certfile: Path | None = Field(
        default=None, description="PEM certificate (with its chain) served on HTTPS and the PostgreSQL endpoint."
    )
    keyfile: Path | None = Field(default=None, description="PEM private key of that certificate (unencrypted).")

    @model_validator(mode="after")
    def _both_or_none(self) -> TlsConfig:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("tls needs both certfile and keyfile (LAKEOPS_TLS__CERTFILE, LAKEOPS_TLS__KEYFILE)")
        return self

    @property
    def enabled(self) -> bool:
        """Whether a certificate is configured."""
        return self.certfile is not None


PermissionLevel = Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]


class AuthConfig(_Frozen):
    """Who may use the service: users with passwords or API tokens, and levels per experiment and model."""

    enabled: bool = Field(
        default=False,
        description="Require HTTP Basic (user, password) or Bearer (API token) credentials on every route but "
        "/health. Off by default: the embedded service binds to localhost only.",
    )
    admin_username: str = Field(default="admin", description="The admin created at start-up if no user exists.")
    admin_password: SecretStr | None = Field(
        default=None, description="That admin's first password; required when auth is on and no user exists yet."
    )
    default_permission: PermissionLevel = Field(
        default="READ",
        description="A user's level on an experiment or registered model without a grant (creators get MANAGE).",
    )
    token_days: float = Field(default=90.0, gt=0, description="API tokens expire after this many days by default.")
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="A portal login (its session cookie) lasts this many hours."
    )


class LakeopsSettings(BaseSettings):
    """Everything lakeops needs to know to open its lake."""

    model_config = SettingsConfigDict(
        env_prefix="LAKEOPS_", env_nested_delimiter="__", frozen=True, extra="forbid", toml_file=None
    )

    home: Path = Field(default_factory=default_home)
    namespace: str = "lakeops"
    storage: StorageConfig = Field(default_factory=LocalStorageConfig)
    catalog: CatalogConfig = Field(
        default_factory=SqlCatalogConfig,
        description="Default: the object-store catalog for s3:// storage, SQLite for the local (file://) lake.",
    )
    write: WriteConfig = Field(default_factory=WriteConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    sql: SqlConfig = Field(default_factory=SqlConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_catalog(cls, data: Any) -> Any:
        """An s3:// lake needs no database: unless a catalog is chosen, it gets the object-store catalog."""
        if isinstance(data, dict) and data.get("catalog") is None:
            storage = data.get("storage")
            kind = storage.get("kind") if isinstance(storage, dict) else getattr(storage, "kind", None)
            if kind == "s3":
                return {**data, "catalog": ObjectCatalogConfig()}
        return data

    @model_validator(mode="after")
    def _check_rest_storage(self) -> LakeopsSettings:
        if self.catalog.kind == "rest" and self.storage.kind == "local" and self.storage.root is not None:
            raise ValueError("a REST catalog decides where data lives; storage.root does not apply")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files: settings come from env and TOML
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments, then environment, then the optional TOML file."""
        config_file = os.environ.get("LAKEOPS_CONFIG") or ("lakeops.toml" if Path("lakeops.toml").is_file() else None)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def warehouse(self) -> str:
        """Warehouse URI for the storage backend."""
        return self.storage.warehouse(self.home)

    def catalog_properties(self) -> dict[str, str]:
        """Everything pyiceberg's ``load_catalog`` needs."""
        props = dict(self.catalog.to_properties(self.home))
        props.update(self.storage.to_properties())
        if self.catalog.kind in ("sql", "object"):
            props["warehouse"] = self.warehouse()
        return props

    def redact(self, text: str) -> str:
        """``text`` with every secret of these settings replaced by ``***`` (for errors shown to people)."""
        for value in _secret_values(self):
            text = text.replace(value, "***")
        return text

    def describe(self) -> dict[str, Any]:
        """A secret-free summary for logs and ``/version``."""
        return {"catalog": self.catalog.kind, "storage": self.storage.kind, "warehouse": self.warehouse()}


def _secret_values(model: BaseModel) -> list[str]:
    """Every non-empty ``SecretStr`` value in ``model`` and its nested models (longest first)."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
            if ":" in value.get_secret_value():  # OAuth2 client credentials "id:secret"
                found.append(value.get_secret_value().split(":", 1)[1])
        elif isinstance(value, BaseModel):
            found.extend(_secret_values(value))
    return sorted({v for v in found if v}, key=len, reverse=True)
