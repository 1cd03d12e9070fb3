"""MQTT ingest: the paho adapter, per-message processing and sequence tracking."""
