"""The user's manifest: typed schema, loading, recipes merged; every user error surfaces here."""
