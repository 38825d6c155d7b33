"""FAQ knowledge base and matcher (pure domain logic; see issue 3)."""
