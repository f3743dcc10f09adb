"""The pipeline stages: each reads files, calls the estimators and writes files (one module per verb)."""
