"""The HTTP server: B2B endpoints mounted from the adapters, health and metrics."""
