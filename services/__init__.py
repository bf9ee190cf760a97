"""IO around the pure domain: event store, command service, settings, CLI, HTTP API."""
