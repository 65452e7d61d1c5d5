"""The HTTP service (FastAPI): native API and MLflow's REST protocol."""
