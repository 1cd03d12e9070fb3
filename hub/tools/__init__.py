"""Board tooling that runs on a workstation: building firmware bundles for boards and for tests."""
