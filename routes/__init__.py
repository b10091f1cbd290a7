"""The app's routes: every module here is loaded at start-up, in file-name order.

A module needs nothing but its `@webhook` and `@api` functions (see docs/routes.md); files whose
name starts with '_' are not loaded. This file only makes the directory a package for the
type checker.
"""
