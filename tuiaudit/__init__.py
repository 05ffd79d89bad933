"""tuiaudit: an audit log with opt-in anonymous telemetry for self-hosted applications."""

__version__ = "0.1.0"
