"""Identity service: device provisioning and module identities."""
