"""The site's trust model (issue 13): TLS certificates, the provisioning store, the broker's policy."""
