"""What the trainer keeps between requests and restarts: SQLite databases in the workspace."""
