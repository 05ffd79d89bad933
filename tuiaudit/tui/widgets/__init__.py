"""The dashboard's panes and their table helpers."""
