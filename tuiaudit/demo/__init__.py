"""``tuiaudit demo``: synthetic traffic and the in-process demo environment."""
