"""Tests against real servers (mosquitto, influxd, victoria-metrics); marked `integration`."""
