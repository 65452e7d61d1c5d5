"""The lake's tables: identifiers, Iceberg schemas, partition specs, sort orders, properties.

Every table is append-only. Mutable entities (experiments, runs, tags) are kept as *change
rows* carrying the whole new state, the time, the actor and the operation; the current state
is the latest row per key. Immutable facts (params, metrics) need no history suffix.

Schemas evolve by adding columns only. ``SCHEMA_VERSION`` is bumped when a column is added
to a ``TableDef``; ``ensure_tables`` adds whatever an existing table lacks (old rows read the
new column as null) and records the version in the table property ``lakeops.schema-version``.
No migration tool and no rewrite of data is ever needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pyarrow as pa
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortField, SortOrder
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

SCHEMA_VERSION = 2
METRIC_BUCKETS = 16

COMMON_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.parquet.row-group-limit": "131072",
    # Concurrent replicas commit to the same tables: let pyiceberg retry optimistic-concurrency failures.
    "commit.retry.num-retries": "30",
    "commit.retry.min-wait-ms": "20",
    "commit.retry.max-wait-ms": "2000",
    "commit.retry.total-timeout-ms": "120000",
    # Keep metadata.json files from piling up with every group commit.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    # Merge manifests so scan planning stays flat as commits accumulate.
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "50",
}


def _f(field_id: int, name: str, typ: object, *, required: bool = False, doc: str | None = None) -> NestedField:
    return NestedField(field_id=field_id, name=name, field_type=typ, required=required, doc=doc)  # type: ignore[arg-type]


def _change_columns(start: int) -> list[NestedField]:
    """Columns every change row carries: when, who, what, and the writer's log position."""
    return [
        _f(start, "changed_at", TimestamptzType(), required=True, doc="when the change was made (UTC)"),
        _f(start + 1, "actor", StringType(), doc="who made the change"),
        _f(start + 2, "operation", StringType(), required=True, doc="create, update, rename, delete, restore, ..."),
        _f(start + 3, "writer_id", StringType(), required=True, doc="the write-ahead log that carried the change"),
        _f(start + 4, "wal_seq", LongType(), required=True, doc="position in that log; orders one writer's changes"),
    ]


@dataclass(frozen=True)
class TableDef:
    """One Iceberg table: its name, schema, layout and properties."""

    name: str
    code: int  # stable id of the table in write-ahead log records; never reuse or renumber
    schema: Schema
    partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC
    sort_order: SortOrder = UNSORTED_SORT_ORDER
    sort_columns: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)
    # Rows of a constrained table are checked against every replica's committed rows before they
    # are acknowledged: the store commits them at once, on the catalog's optimistic concurrency
    # (lakeops/stores/iceberg.py, "constrained writes"), instead of through the group commit.
    # Each entry names columns whose values identify what one write claims (a param of a run, an
    # experiment name): two writes claiming the same values are checked one after the other.
    constraint_keys: tuple[tuple[str, ...], ...] = ()

    @property
    def constrained(self) -> bool:
        """Whether writes to this table are checked across replicas before they are acknowledged."""
        return bool(self.constraint_keys)

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The pyarrow schema rows must have to be appended (built once: it is on the hot path)."""
        return schema_to_pyarrow(self.schema, include_field_ids=False)

    def all_properties(self) -> dict[str, str]:
        """Common properties, this table's own, and the schema version."""
        # A constrained commit must fail on a concurrent one, so its checks can run again: pyiceberg
        # would re-apply the append unchecked.
        own_retries = {"commit.retry.num-retries": "0"} if self.constrained else {}
        return {**COMMON_PROPERTIES, **own_retries, **self.properties, "lakeops.schema-version": str(SCHEMA_VERSION)}


EXPERIMENT_CHANGES = TableDef(
    name="experiment_changes",
    code=0,
    schema=Schema(
        _f(1, "experiment_id", StringType(), required=True),
        _f(2, "name", StringType(), required=True),
        _f(3, "artifact_location", StringType()),
        _f(4, "lifecycle_stage", StringType(), required=True, doc="active or deleted"),
        _f(5, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    constraint_keys=(("experiment_id",), ("name",)),
)

RUN_CHANGES = TableDef(
    name="run_changes",
    code=1,
    schema=Schema(
        _f(1, "run_id", StringType(), required=True),
        _f(2, "experiment_id", StringType(), required=True),
        _f(3, "run_name", StringType()),
        _f(4, "user_id", StringType()),
        _f(5, "status", StringType(), required=True, doc="RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"),
        _f(6, "started_at", TimestamptzType()),
        _f(7, "ended_at", TimestamptzType()),
        _f(8, "lifecycle_stage", StringType(), required=True),
        _f(9, "artifact_uri", StringType()),
        _f(10, "parent_run_id", StringType()),
        *_change_columns(20),
    ),
)

TAG_CHANGES = TableDef(
    name="tag_changes",
    code=2,
    schema=Schema(
        _f(1, "entity_type", StringType(), required=True, doc="experiment, run or logged_model"),
        _f(2, "entity_id", StringType(), required=True),
        _f(3, "key", StringType(), required=True),
        _f(4, "value", StringType()),
        _f(5, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
)

PARAMS = TableDef(
    name="params",
    code=3,
    schema=Schema(
        _f(1, "run_id", StringType(), required=True),
        _f(2, "key", StringType(), required=True),
        _f(3, "value", StringType(), required=True),
        _f(4, "logged_at", TimestamptzType(), required=True),
    ),
    constraint_keys=(("run_id", "key"),),
)

_METRICS_SCHEMA = Schema(
    _f(1, "run_id", StringType(), required=True),
    _f(2, "key", StringType(), required=True),
    _f(3, "value", DoubleType(), required=True, doc="NaN and +-inf allowed"),
    _f(4, "recorded_at", TimestamptzType(), required=True, doc="the client's timestamp (ms precision)"),
    _f(5, "step", LongType(), required=True),
)

METRICS = TableDef(
    name="metrics",
    code=4,
    schema=_METRICS_SCHEMA,
    # One run's history sits in one bucket, and files are sorted by run, key and step, so a
    # history read prunes other buckets by partition and other runs by column statistics.
    partition_spec=PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=BucketTransform(METRIC_BUCKETS), name="run_id_bucket")
    ),
    sort_order=SortOrder(
        SortField(source_id=1, transform=IdentityTransform()),
        SortField(source_id=2, transform=IdentityTransform()),
        SortField(source_id=5, transform=IdentityTransform()),
        SortField(source_id=4, transform=IdentityTransform()),
    ),
    sort_columns=("run_id", "key", "step", "recorded_at"),
)

METRIC_LATEST = TableDef(
    name="metric_latest",
    code=8,
    # Derived, never logged: each group commit of ``metrics`` appends one row per (run, key) it
    # touched, summarising that commit's points (catalog/summaries.py). The rows of one key fold
    # associatively (latest by MLflow's rank, min of mins, max of maxes, sum of counts), so start-up
    # reads this O(runs x keys) table instead of every metric point, and maintenance reduces it.
    schema=Schema(
        _f(1, "run_id", StringType(), required=True),
        _f(2, "key", StringType(), required=True),
        _f(3, "value", DoubleType(), required=True, doc="the latest point's value (MLflow's rank)"),
        _f(4, "recorded_at", TimestamptzType(), required=True, doc="the latest point's timestamp"),
        _f(5, "step", LongType(), required=True, doc="the latest point's step"),
        _f(6, "min_value", DoubleType(), doc="smallest value, NaN ignored (null if every value is NaN)"),
        _f(7, "max_value", DoubleType(), doc="largest value, NaN ignored"),
        _f(8, "points", LongType(), required=True, doc="number of points summarised"),
    ),
    sort_columns=("run_id", "key"),
    # Our committer retries a conflicting append itself (reload, append again); pyiceberg's own
    # retry would re-apply a backfill another replica already made.
    properties={"commit.retry.num-retries": "0"},
)

LOGGED_MODEL_CHANGES = TableDef(
    name="logged_model_changes",
    code=5,
    schema=Schema(
        _f(1, "model_id", StringType(), required=True),
        _f(2, "experiment_id", StringType(), required=True),
        _f(3, "name", StringType(), required=True),
        _f(4, "artifact_location", StringType()),
        _f(5, "source_run_id", StringType()),
        _f(6, "model_type", StringType()),
        _f(7, "status", StringType(), required=True, doc="PENDING, READY or FAILED"),
        _f(8, "status_message", StringType()),
        _f(9, "params_json", StringType(), doc="the model's params as a JSON object"),
        _f(10, "lifecycle_stage", StringType(), required=True),
        _f(11, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
)

LOGGED_MODEL_METRICS = TableDef(
    name="logged_model_metrics",
    code=9,
    # A metric point logged with a model_id (MLflow 3): kept in ``metrics`` for its run and here for
    # its model, so a logged model's metrics are read by model without scanning the metric points.
    # Read on demand, never folded into the in-memory state.
    schema=Schema(
        _f(1, "model_id", StringType(), required=True),
        _f(2, "run_id", StringType(), required=True),
        _f(3, "key", StringType(), required=True),
        _f(4, "value", DoubleType(), required=True, doc="NaN and +-inf allowed"),
        _f(5, "recorded_at", TimestamptzType(), required=True, doc="the client's timestamp (ms precision)"),
        _f(6, "step", LongType(), required=True),
        _f(7, "dataset_name", StringType()),
        _f(8, "dataset_digest", StringType()),
    ),
    sort_columns=("model_id", "key", "step"),
    sort_order=SortOrder(
        SortField(source_id=1, transform=IdentityTransform()),
        SortField(source_id=3, transform=IdentityTransform()),
    ),
)

RUN_IO = TableDef(
    name="run_io",
    code=6,
    schema=Schema(
        _f(1, "run_id", StringType(), required=True),
        _f(2, "direction", StringType(), required=True, doc="input or output"),
        _f(3, "kind", StringType(), required=True, doc="dataset or model"),
        _f(4, "model_id", StringType()),
        _f(5, "step", LongType()),
        _f(6, "dataset_name", StringType()),
        _f(7, "dataset_digest", StringType()),
        _f(8, "source_type", StringType()),
        _f(9, "source", StringType()),
        _f(10, "dataset_schema", StringType()),
        _f(11, "profile", StringType()),
        _f(12, "tags_json", StringType(), doc="the link's tags as a JSON object (e.g. mlflow.data.context)"),
        _f(13, "logged_at", TimestamptzType(), required=True),
    ),
)

ARTIFACT_VERSIONS = TableDef(
    name="artifact_versions",
    code=7,
    schema=Schema(
        _f(1, "path", StringType(), required=True, doc="logical path, e.g. <experiment>/<run>/artifacts/model.pkl"),
        _f(2, "version_id", StringType(), required=True, doc="this version's id (pre-blob rows: the store's)"),
        _f(3, "object_key", StringType(), required=True, doc="sha256:<digest> of the blob (pre-blob rows: the path)"),
        _f(4, "size_bytes", LongType(), required=True),
        _f(5, "sha256", StringType(), required=True),
        _f(6, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
)

# -- model registry (codes 10-19) ----------------------------------------------------------------
# Registered models are keyed by a stable id, so a rename is one row and versions, aliases and
# tags follow it. Versions are numbered per model and never reused.

REGISTERED_MODEL_CHANGES = TableDef(
    name="registered_model_changes",
    code=10,
    schema=Schema(
        _f(1, "registered_model_id", StringType(), required=True),
        _f(2, "name", StringType(), required=True),
        _f(3, "description", StringType()),
        _f(4, "is_deleted", BooleanType(), required=True),
        _f(5, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    constraint_keys=(("registered_model_id",), ("name",)),
)

MODEL_VERSION_CHANGES = TableDef(
    name="model_version_changes",
    code=11,
    schema=Schema(
        _f(1, "registered_model_id", StringType(), required=True),
        _f(2, "version", LongType(), required=True),
        _f(3, "source", StringType(), required=True, doc="where the model came from (runs:/, models:/, a URI)"),
        _f(4, "storage_location", StringType(), doc="the artifacts' URI the source resolved to"),
        _f(5, "source_run_id", StringType(), doc="the run that produced the model (lineage: run -> version)"),
        _f(6, "model_id", StringType(), doc="the MLflow 3 logged model it was promoted from"),
        _f(7, "run_link", StringType()),
        _f(8, "description", StringType()),
        _f(9, "user_id", StringType()),
        _f(10, "stage", StringType(), required=True, doc="legacy stage: None, Staging, Production, Archived"),
        _f(11, "status", StringType(), required=True, doc="READY, PENDING_REGISTRATION, FAILED_REGISTRATION"),
        _f(12, "status_message", StringType()),
        _f(13, "is_deleted", BooleanType(), required=True),
        _f(14, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    constraint_keys=(("registered_model_id", "version"),),
)

MODEL_ALIAS_CHANGES = TableDef(
    name="model_alias_changes",
    code=12,
    schema=Schema(
        _f(1, "registered_model_id", StringType(), required=True),
        _f(2, "alias", StringType(), required=True),
        _f(3, "version", LongType(), doc="the version the alias points to; null once deleted"),
        _f(4, "is_deleted", BooleanType(), required=True),
        _f(5, "is_forced", BooleanType(), required=True, doc="set over a quality gate's refusal"),
        _f(6, "force_reason", StringType()),
        _f(7, "gate_reasons", StringType(), doc="the gate's refusal reasons (JSON list) when forced"),
        *_change_columns(20),
    ),
    constraint_keys=(("registered_model_id", "alias"),),
)

REGISTRY_TAG_CHANGES = TableDef(
    name="registry_tag_changes",
    code=13,
    schema=Schema(
        _f(1, "registered_model_id", StringType(), required=True),
        _f(2, "version", LongType(), doc="null for a registered model's tag"),
        _f(3, "key", StringType(), required=True),
        _f(4, "value", StringType()),
        _f(5, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
)

DEPLOYMENT_EVENTS = TableDef(
    name="deployment_events",
    code=14,
    schema=Schema(
        _f(1, "deployment_id", StringType(), required=True),
        _f(2, "registered_model_id", StringType(), required=True),
        _f(3, "model_name", StringType(), required=True, doc="the model's name when deployed"),
        _f(4, "version", LongType(), required=True),
        _f(5, "environment", StringType(), required=True, doc="e.g. production, staging"),
        _f(6, "application_version", StringType(), doc="the application release the model shipped in"),
        _f(7, "target", StringType(), doc="where: endpoint, cluster, host"),
        _f(8, "is_retired", BooleanType(), required=True, doc="the model was taken out of the environment"),
        *_change_columns(20),
    ),
)

# -- datasets, lineage and data quality (codes 20-29) ---------------------------------------------

DATASET_VERSIONS = TableDef(
    name="dataset_versions",
    code=20,
    schema=Schema(
        _f(
            1,
            "dataset_version_id",
            StringType(),
            required=True,
            doc="derived from name and digest: same content, same id",
        ),
        _f(2, "dataset_name", StringType(), required=True),
        _f(3, "digest", StringType(), required=True, doc="sha256 of the content, or snapshot:<id> for Iceberg"),
        _f(4, "digest_kind", StringType(), required=True, doc="sha256, iceberg_snapshot, mlflow or openlineage"),
        _f(5, "source_type", StringType(), required=True, doc="dataframe, file, folder, iceberg, mlflow, openlineage"),
        _f(6, "source", StringType(), doc="where the data is: object key, table identifier, URI"),
        _f(7, "schema_json", StringType(), doc="columns and types as a JSON list"),
        _f(8, "row_count", LongType()),
        _f(9, "size_bytes", LongType()),
        _f(10, "profile_json", StringType(), doc="per-column statistics as a JSON object"),
        _f(11, "created_at", TimestamptzType(), required=True),
        _f(12, "actor", StringType()),
    ),
)

LINEAGE_EDGES = TableDef(
    name="lineage_edges",
    code=21,
    schema=Schema(
        _f(1, "source_kind", StringType(), required=True, doc="dataset_version, run, model_version, deployment, job"),
        _f(2, "source_id", StringType(), required=True),
        _f(3, "target_kind", StringType(), required=True),
        _f(4, "target_id", StringType(), required=True),
        _f(5, "relation", StringType(), required=True, doc="input, output, parent, executes, produced, deployed"),
        _f(6, "origin", StringType(), required=True, doc="who asserted the edge: lakeops, mlflow, openlineage, ..."),
        _f(7, "properties_json", StringType()),
        _f(8, "created_at", TimestamptzType(), required=True),
        _f(9, "actor", StringType()),
    ),
)

OPENLINEAGE_EVENTS = TableDef(
    name="openlineage_events",
    code=22,
    schema=Schema(
        _f(1, "run_id", StringType(), required=True, doc="the event's run.runId"),
        _f(2, "event_type", StringType(), doc="START, RUNNING, COMPLETE, ABORT, FAIL, OTHER"),
        _f(3, "event_time", TimestamptzType(), required=True),
        _f(4, "job_namespace", StringType(), required=True),
        _f(5, "job_name", StringType(), required=True),
        _f(6, "producer", StringType(), required=True),
        _f(7, "schema_url", StringType()),
        _f(8, "payload_json", StringType(), required=True, doc="the event as received"),
        _f(9, "received_at", TimestamptzType(), required=True),
    ),
)

EXPECTATION_SUITE_CHANGES = TableDef(
    name="expectation_suite_changes",
    code=23,
    schema=Schema(
        _f(1, "dataset_name", StringType(), required=True),
        _f(2, "suite_name", StringType(), required=True),
        _f(3, "expectations_json", StringType(), required=True, doc="great-expectations expectation configurations"),
        _f(4, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
)

VALIDATION_RESULTS = TableDef(
    name="validation_results",
    code=24,
    schema=Schema(
        _f(1, "validation_id", StringType(), required=True),
        _f(2, "dataset_version_id", StringType(), required=True),
        _f(3, "dataset_name", StringType(), required=True),
        _f(4, "suite_name", StringType(), required=True),
        _f(5, "is_success", BooleanType(), required=True),
        _f(6, "statistics_json", StringType(), required=True, doc="evaluated, successful, unsuccessful, percent"),
        _f(7, "results_json", StringType(), required=True, doc="per expectation: type, kwargs, success, result"),
        _f(8, "validated_at", TimestamptzType(), required=True),
        _f(9, "actor", StringType()),
    ),
)

# -- saved SQL queries (codes 40-49) ---------------------------------------------------------------

SAVED_QUERY_CHANGES = TableDef(
    name="saved_query_changes",
    code=40,
    schema=Schema(
        _f(1, "name", StringType(), required=True, doc="unique name of the saved query"),
        _f(2, "sql", StringType(), required=True, doc="one SELECT over the lakeops views"),
        _f(3, "description", StringType()),
        _f(4, "author", StringType(), doc="who wrote the query (the actor of its creation)"),
        _f(5, "is_deleted", BooleanType(), required=True),
        _f(6, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
)

# -- checkpoints and artifact storage (codes 50-59) -------------------------------------------------

CHECKPOINT_CHANGES = TableDef(
    name="checkpoint_changes",
    code=50,
    # One row per checkpoint logged (operation "create") or removed by retention or by hand
    # ("delete"); the current checkpoints of a run are the latest row per (run_id, step) that is
    # not deleted. Read on demand, one run at a time: a run's rows sit in one bucket, sorted by
    # run and step, so a read prunes the other buckets by partition and the other runs by stats.
    schema=Schema(
        _f(1, "run_id", StringType(), required=True),
        _f(2, "experiment_id", StringType(), required=True),
        _f(3, "step", LongType(), required=True),
        _f(4, "artifact_path", StringType(), required=True, doc="the checkpoint's directory in the artifact store"),
        _f(5, "is_dir", BooleanType(), required=True, doc="a directory was logged (else one file)"),
        _f(6, "files_json", StringType(), required=True, doc="[{path, size_bytes, sha256, version_id}] pinned"),
        _f(7, "size_bytes", LongType(), required=True),
        _f(8, "metrics_json", StringType(), required=True, doc="the metrics at this step as a JSON object"),
        _f(9, "is_deleted", BooleanType(), required=True),
        _f(10, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    partition_spec=PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=BucketTransform(METRIC_BUCKETS), name="run_id_bucket")
    ),
    sort_order=SortOrder(
        SortField(source_id=1, transform=IdentityTransform()),
        SortField(source_id=3, transform=IdentityTransform()),
    ),
    sort_columns=("run_id", "step", "changed_at"),
)

# -- collaboration (codes 60-69) ---------------------------------------------------------------------

COMMENT_CHANGES = TableDef(
    name="comment_changes",
    code=60,
    # One row per comment posted ("create") and one more when it is deleted ("delete", is_deleted);
    # the current comments are the latest row per comment_id that is not deleted (the `comments`
    # view). Read on demand for one target at a time, sorted by target so reads prune by statistics.
    schema=Schema(
        _f(1, "comment_id", StringType(), required=True),
        _f(2, "target_kind", StringType(), required=True, doc="run, model or version"),
        _f(3, "target_id", StringType(), required=True, doc="run_id; registered_model_id; registered_model_id/version"),
        _f(4, "target_name", StringType(), doc="the target as people name it when the comment was posted"),
        _f(5, "author", StringType(), required=True),
        _f(6, "body", StringType(), required=True),
        _f(7, "mentions_json", StringType(), required=True, doc="the @mentioned user names as a JSON list"),
        _f(8, "is_deleted", BooleanType(), required=True),
        _f(9, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    sort_order=SortOrder(
        SortField(source_id=3, transform=IdentityTransform()),
        SortField(source_id=9, transform=IdentityTransform()),
    ),
    sort_columns=("target_id", "created_at"),
)

# -- users, API tokens, permissions and workspaces (codes 70-79) ---------------------------------------------------

USER_CHANGES = TableDef(
    name="user_changes",
    code=70,
    # One row per user created, changed (password, admin flag) or deleted; the current users are the
    # latest row per username that is not deleted. Password hashes are argon2id (argon2-cffi).
    schema=Schema(
        _f(1, "user_id", LongType(), required=True),
        _f(2, "username", StringType(), required=True),
        _f(3, "password_hash", StringType(), required=True, doc="argon2id hash; never the password"),
        _f(4, "is_admin", BooleanType(), required=True),
        _f(5, "is_deleted", BooleanType(), required=True),
        _f(6, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    constraint_keys=(("username",),),
)

API_TOKEN_CHANGES = TableDef(
    name="api_token_changes",
    code=71,
    # One row per token issued ("create") and one more when it is revoked ("revoke"). The token is
    # shown once; only its SHA-256 is kept (tokens are 256 random bits: a slow hash adds nothing).
    schema=Schema(
        _f(1, "token_id", StringType(), required=True, doc="public id of the token (its first characters)"),
        _f(2, "username", StringType(), required=True),
        _f(3, "token_sha256", StringType(), required=True),
        _f(4, "name", StringType(), doc="what the token is for"),
        _f(5, "expires_at", TimestamptzType(), doc="null: never"),
        _f(6, "is_revoked", BooleanType(), required=True),
        _f(7, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
)

PERMISSION_CHANGES = TableDef(
    name="permission_changes",
    code=72,
    # One row per grant, change or revocation of a user's level on one experiment or registered
    # model; the current grants are the latest row per (resource_type, resource_id, username).
    schema=Schema(
        _f(1, "resource_type", StringType(), required=True, doc="experiment or registered_model"),
        _f(2, "resource_id", StringType(), required=True, doc="experiment id, or registered model name"),
        _f(3, "username", StringType(), required=True),
        _f(4, "permission", StringType(), required=True, doc="READ, EDIT, MANAGE or NO_PERMISSIONS"),
        _f(5, "is_deleted", BooleanType(), required=True, doc="the grant was revoked"),
        *_change_columns(20),
    ),
)

WORKSPACE_CHANGES = TableDef(
    name="workspace_changes",
    code=73,
    # MLflow 3's workspaces: one row per workspace created, updated (description, artifact root) or
    # deleted; the current workspaces are the latest row per name that is not deleted. The workspace
    # "default" is implicit (never stored): everything not assigned elsewhere belongs to it. Who is a
    # member, at which level, is a grant in ``permission_changes`` (resource_type "workspace").
    schema=Schema(
        _f(1, "name", StringType(), required=True),
        _f(2, "description", StringType()),
        _f(3, "default_artifact_root", StringType()),
        _f(4, "is_deleted", BooleanType(), required=True),
        _f(5, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    constraint_keys=(("name",),),
)

WORKSPACE_RESOURCE_CHANGES = TableDef(
    name="workspace_resource_changes",
    code=74,
    # Which workspace an experiment or a registered model belongs to: one row when it is created in a
    # workspace other than "default", one when it moves (its workspace deleted with SET_DEFAULT, a model
    # renamed: "rename" moves the row to the new name). No row: the "default" workspace.
    schema=Schema(
        _f(1, "resource_type", StringType(), required=True, doc="experiment or registered_model"),
        _f(2, "resource_id", StringType(), required=True, doc="experiment id, or registered model name"),
        _f(3, "workspace", StringType(), required=True, doc="the workspace's name"),
        *_change_columns(20),
    ),
)

# -- GenAI: traces, spans, assessments (codes 80-89) ---------------------------------------------------
# MLflow 3's traces. All are read on demand (never folded into the in-memory state): their rows grow
# with the traffic of the applications traced, not with the entities people manage.

TRACE_INFO_CHANGES = TableDef(
    name="trace_info_changes",
    code=80,
    # One row when a trace is recorded (the client's StartTraceV3, operation "start"; or, for a trace
    # sent as OpenTelemetry spans alone, its root span, operation "spans"), one per later change
    # (deleted: "delete", is_deleted). The current trace is the latest row per trace_id, a "start" row
    # ranking above rows derived from spans. A "link" row (LinkTracesToRun) is an association kept beside
    # the state: its metadata names a run the trace is linked to, it changes nothing else. Sorted by experiment, then
    # time, so a search of one experiment's traces prunes the others' files by statistics.
    schema=Schema(
        _f(1, "trace_id", StringType(), required=True, doc="MLflow's id: tr-<32 hex> of the OpenTelemetry trace id"),
        _f(2, "experiment_id", StringType(), required=True),
        _f(3, "client_request_id", StringType()),
        _f(4, "request_time", TimestamptzType(), required=True, doc="when the trace started"),
        _f(5, "execution_duration_ms", LongType(), doc="root span's duration"),
        _f(6, "state", StringType(), required=True, doc="OK, ERROR, IN_PROGRESS or STATE_UNSPECIFIED"),
        _f(7, "request_preview", StringType()),
        _f(8, "response_preview", StringType()),
        _f(9, "trace_name", StringType(), doc="the root span's name (tag mlflow.traceName)"),
        _f(10, "metadata_json", StringType(), required=True, doc="trace metadata as a JSON object"),
        _f(11, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
    sort_order=SortOrder(
        SortField(source_id=2, transform=IdentityTransform()),
        SortField(source_id=4, transform=IdentityTransform()),
    ),
    sort_columns=("experiment_id", "request_time"),
)

TRACE_TAG_CHANGES = TableDef(
    name="trace_tag_changes",
    code=81,
    schema=Schema(
        _f(1, "trace_id", StringType(), required=True),
        _f(2, "experiment_id", StringType(), required=True),
        _f(3, "key", StringType(), required=True),
        _f(4, "value", StringType()),
        _f(5, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
    sort_order=SortOrder(SortField(source_id=2, transform=IdentityTransform())),
    sort_columns=("experiment_id", "trace_id"),
)

SPANS = TableDef(
    name="spans",
    code=82,
    # The large table, laid out like metrics: one trace's spans sit in one bucket and files are sorted
    # by trace and start time, so reading a trace prunes other buckets by partition and other traces
    # by column statistics. ``content_json`` is the span as the OpenTelemetry protobuf's JSON mapping,
    # returned as received; the other columns are its fields flattened for SQL.
    schema=Schema(
        _f(1, "trace_id", StringType(), required=True),
        _f(2, "span_id", StringType(), required=True, doc="16 hex digits"),
        _f(3, "parent_span_id", StringType(), doc="null for the root span"),
        _f(4, "experiment_id", StringType(), required=True),
        _f(5, "name", StringType(), required=True),
        _f(6, "span_type", StringType(), doc="MLflow's span type: LLM, CHAIN, TOOL, RETRIEVER, ..."),
        _f(7, "status_code", StringType(), required=True, doc="OK, ERROR or UNSET"),
        _f(8, "status_message", StringType()),
        _f(9, "started_at", TimestamptzType(), required=True),
        _f(10, "ended_at", TimestamptzType()),
        _f(11, "attributes_json", StringType(), required=True, doc="attributes as a JSON object, values decoded"),
        _f(12, "content_json", StringType(), required=True, doc="the OpenTelemetry span (protobuf JSON mapping)"),
        _f(13, "ingested_at", TimestamptzType(), required=True),
    ),
    partition_spec=PartitionSpec(
        PartitionField(source_id=1, field_id=1000, transform=BucketTransform(METRIC_BUCKETS), name="trace_id_bucket")
    ),
    sort_order=SortOrder(
        SortField(source_id=1, transform=IdentityTransform()),
        SortField(source_id=9, transform=IdentityTransform()),
    ),
    sort_columns=("trace_id", "started_at"),
)

ASSESSMENT_CHANGES = TableDef(
    name="assessment_changes",
    code=83,
    # Feedback and expectations on traces: one row per create, update, override ("invalidate": an
    # overriding assessment made this one invalid) and delete; the current assessment is the latest
    # row per assessment_id. ``content_json`` is the assessment in MLflow's JSON shape.
    schema=Schema(
        _f(1, "assessment_id", StringType(), required=True),
        _f(2, "trace_id", StringType(), required=True),
        _f(3, "experiment_id", StringType(), required=True),
        _f(4, "name", StringType(), required=True),
        _f(5, "kind", StringType(), required=True, doc="feedback or expectation"),
        _f(6, "value_json", StringType(), doc="the value as JSON (null for a feedback that is an error)"),
        _f(7, "source_type", StringType(), doc="HUMAN, LLM_JUDGE or CODE"),
        _f(8, "source_id", StringType()),
        _f(9, "span_id", StringType()),
        _f(10, "overrides", StringType(), doc="the assessment this one replaces"),
        _f(11, "is_valid", BooleanType(), required=True, doc="false once another assessment overrides it"),
        _f(12, "content_json", StringType(), required=True),
        _f(13, "created_at", TimestamptzType(), required=True),
        _f(14, "is_deleted", BooleanType(), required=True),
        *_change_columns(20),
    ),
    sort_order=SortOrder(SortField(source_id=3, transform=IdentityTransform())),
    sort_columns=("experiment_id", "trace_id"),
)

# -- webhooks (codes 90-99) ---------------------------------------------------------------------------

WEBHOOK_CHANGES = TableDef(
    name="webhook_changes",
    code=90,
    # One row per webhook created, updated or deleted; the current webhooks are the latest row per
    # webhook_id that is not deleted. The HMAC secret signs deliveries, so it is kept as given: the
    # table is hidden from user SQL and the API never returns it.
    schema=Schema(
        _f(1, "webhook_id", StringType(), required=True),
        _f(2, "name", StringType(), required=True),
        _f(3, "description", StringType()),
        _f(4, "url", StringType(), required=True),
        _f(5, "events_json", StringType(), required=True, doc='[{"entity": ..., "action": ...}] subscribed to'),
        _f(6, "secret", StringType(), doc="HMAC-SHA256 key of the X-MLflow-Signature header"),
        _f(7, "status", StringType(), required=True, doc="ACTIVE or DISABLED"),
        _f(8, "is_deleted", BooleanType(), required=True),
        _f(9, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
)

WEBHOOK_DELIVERIES = TableDef(
    name="webhook_deliveries",
    code=91,
    # The delivery log: one row when an event is queued for a webhook ("pending"), one per attempt
    # ("retrying" after a failure with attempts left, "delivered", or "failed" once they run out).
    # A delivery whose latest row is pending or retrying is resumed when the service starts.
    schema=Schema(
        _f(1, "delivery_id", StringType(), required=True),
        _f(2, "webhook_id", StringType(), required=True),
        _f(3, "entity", StringType(), required=True, doc="model_version, model_version_alias, ..."),
        _f(4, "action", StringType(), required=True, doc="created, set, deleted, ..."),
        _f(5, "payload_json", StringType(), required=True, doc="the body sent"),
        _f(6, "status", StringType(), required=True, doc="pending, retrying, delivered or failed"),
        _f(7, "attempt", LongType(), required=True, doc="attempts made so far"),
        _f(8, "response_status", LongType()),
        _f(9, "error", StringType()),
        _f(10, "recorded_at", TimestamptzType(), required=True),
    ),
    sort_columns=("webhook_id", "recorded_at"),
)

# -- evaluation datasets (codes 100-109) --------------------------------------------------------------

EVALUATION_DATASET_CHANGES = TableDef(
    name="evaluation_dataset_changes",
    code=100,
    # MLflow 3's evaluation datasets (mlflow.genai.datasets): one row per dataset created, changed
    # (tags, experiments, schema) or deleted; the current ones are the latest row per dataset_id.
    schema=Schema(
        _f(1, "dataset_id", StringType(), required=True),
        _f(2, "name", StringType(), required=True),
        _f(3, "tags_json", StringType(), required=True, doc="tags as a JSON object"),
        _f(4, "experiment_ids_json", StringType(), required=True, doc="the experiments it belongs to, a JSON list"),
        _f(5, "schema_json", StringType(), doc="the records' fields, as MLflow infers them"),
        _f(6, "profile_json", StringType()),
        _f(7, "digest", StringType(), required=True),
        _f(8, "created_by", StringType()),
        _f(9, "is_deleted", BooleanType(), required=True),
        _f(10, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
)

EVALUATION_RECORD_CHANGES = TableDef(
    name="evaluation_record_changes",
    code=101,
    # The records of evaluation datasets: one row per record inserted, merged (same inputs: its
    # expectations and tags merged in) or deleted; the current ones are the latest row per record.
    schema=Schema(
        _f(1, "dataset_record_id", StringType(), required=True),
        _f(2, "dataset_id", StringType(), required=True),
        _f(
            3,
            "input_hash",
            StringType(),
            required=True,
            doc="sha256 of the inputs (sorted JSON): one record per inputs",
        ),
        _f(4, "inputs_json", StringType(), required=True),
        _f(5, "outputs_json", StringType()),
        _f(6, "expectations_json", StringType()),
        _f(7, "tags_json", StringType()),
        _f(8, "source_json", StringType()),
        _f(9, "source_id", StringType()),
        _f(10, "source_type", StringType()),
        _f(11, "created_by", StringType()),
        _f(12, "is_deleted", BooleanType(), required=True),
        _f(13, "created_at", TimestamptzType(), required=True),
        *_change_columns(20),
    ),
    sort_order=SortOrder(SortField(source_id=2, transform=IdentityTransform())),
    sort_columns=("dataset_id", "dataset_record_id"),
)

# Parents before children: commits and loads follow this order (see lakeops/stores/iceberg.py).
TABLES: tuple[TableDef, ...] = (
    EXPERIMENT_CHANGES,
    RUN_CHANGES,
    LOGGED_MODEL_CHANGES,
    TAG_CHANGES,
    PARAMS,
    METRICS,
    METRIC_LATEST,
    LOGGED_MODEL_METRICS,
    RUN_IO,
    ARTIFACT_VERSIONS,
    # -- model registry --
    REGISTERED_MODEL_CHANGES,
    MODEL_VERSION_CHANGES,
    MODEL_ALIAS_CHANGES,
    REGISTRY_TAG_CHANGES,
    DEPLOYMENT_EVENTS,
    # -- datasets, lineage and data quality --
    DATASET_VERSIONS,
    LINEAGE_EDGES,
    OPENLINEAGE_EVENTS,
    EXPECTATION_SUITE_CHANGES,
    VALIDATION_RESULTS,
    # -- saved SQL queries --
    SAVED_QUERY_CHANGES,
    # -- checkpoints and artifact storage --
    CHECKPOINT_CHANGES,
    # -- collaboration --
    COMMENT_CHANGES,
    # -- users, API tokens and permissions --
    USER_CHANGES,
    API_TOKEN_CHANGES,
    PERMISSION_CHANGES,
    WORKSPACE_CHANGES,
    WORKSPACE_RESOURCE_CHANGES,
    # -- GenAI: traces --
    TRACE_INFO_CHANGES,
    TRACE_TAG_CHANGES,
    SPANS,
    ASSESSMENT_CHANGES,
    # -- webhooks --
    WEBHOOK_CHANGES,
    WEBHOOK_DELIVERIES,
    # -- evaluation datasets --
    EVALUATION_DATASET_CHANGES,
    EVALUATION_RECORD_CHANGES,
)
TABLES_BY_CODE: dict[int, TableDef] = {t.code: t for t in TABLES}
TABLES_BY_NAME: dict[str, TableDef] = {t.name: t for t in TABLES}
# Tables user SQL never sees (they hold password and token hashes); read by lakeops only.
SQL_HIDDEN_TABLES: frozenset[str] = frozenset({USER_CHANGES.name, API_TOKEN_CHANGES.name, WEBHOOK_CHANGES.name})
# Tables read from the lake on demand, with pruning, and never folded into the in-memory state:
# their rows grow with the data (one per checkpoint, per stored object, per span), not with the entities.
ON_DEMAND_TABLES: frozenset[str] = frozenset(
    {
        CHECKPOINT_CHANGES.name,
        COMMENT_CHANGES.name,
        LOGGED_MODEL_METRICS.name,
        TRACE_INFO_CHANGES.name,
        TRACE_TAG_CHANGES.name,
        SPANS.name,
        ASSESSMENT_CHANGES.name,
        WEBHOOK_CHANGES.name,
        WEBHOOK_DELIVERIES.name,
        EVALUATION_DATASET_CHANGES.name,
        EVALUATION_RECORD_CHANGES.name,
    }
)
