"""The domain: what scheduling means, free of storage and processes (pure functions)."""
