"""Detection in the hub's stream: data-quality, utility and air-quality detectors (docs/detect.md).

hub.detect.events holds the Event every detector emits; hub.detect.engine the Detectors the ingest feeds.
"""
