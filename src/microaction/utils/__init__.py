"""Helpers for the entry points: config handling, loggers, reports."""
