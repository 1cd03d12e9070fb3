"""InfluxDB sinks: line protocol encoding, the v1 and v2 write clients, and the spool-draining writer."""
