"""Provider adapters: one module per provider, one class per stream."""
