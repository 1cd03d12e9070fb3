"""MQTT ingest: the asyncio MQTT connection (packets from protocols.mqtt_codec), per-message processing,
sequence tracking and the boards' confirmations."""
