"""Datasets as versioned objects: content digest, schema, row count and profile, linked to runs.

A dataset version is identified by its name and content digest, so the same content logged
twice is one version (``dataset_versions`` table; runs link to it through lineage edges and,
for MLflow clients, ``run_io`` rows). Modules: ``service`` (``DatasetService``), ``versions``
(record, link, read), ``sources`` (DataFrame, artifact, s3:// location, Iceberg snapshot),
``profiling`` (schema, profile, digest) and ``run_io`` (MLflow's ``log_input``, which the
tracking service calls).
"""

from lakeops.datasets.service import DatasetService

__all__ = ["DatasetService"]
