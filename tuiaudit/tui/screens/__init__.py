"""Modal screens of the dashboard: row detail, help, confirmations."""
