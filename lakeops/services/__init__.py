"""Domain services: the operations lakeops offers, independent of HTTP."""
