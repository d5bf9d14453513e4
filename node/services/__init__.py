"""Domain services: pure Python over the store, testable without a server."""
