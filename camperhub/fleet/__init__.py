"""Fleet health (ARCHITECTURE.md §1, fleet staff): battery analytics and alerts over the store."""
