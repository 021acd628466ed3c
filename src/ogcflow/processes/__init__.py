"""Processes: the registry, the contract a process implements and the built-in processes."""

from ogcflow.processes.base import JobContext, OutputValue, Process, ProcessRegistry

__all__ = ["JobContext", "OutputValue", "Process", "ProcessRegistry"]
