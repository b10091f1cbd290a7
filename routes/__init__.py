"""Dialtone's web routes: one module per webhook family, each with an `install(app, ...)`."""
