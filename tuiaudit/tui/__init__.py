"""The Textual dashboard (``tuiaudit tui``). Only this package imports textual."""
