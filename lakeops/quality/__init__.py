"""Data quality: great-expectations suites attached to dataset names, validations, and the alias gate."""
