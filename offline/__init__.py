"""The offline side: event history, the platform replay, and the `recsys` command."""
