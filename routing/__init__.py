"""Skills-based routing decisions (pure domain logic; see issue 5)."""
