"""Data: the Example record, readers for each corpus format, miners, and the build."""

from nl2code.data.records import Example, Report

__all__ = ["Example", "Report"]
