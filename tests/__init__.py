"""Qala's test suite: a package, so that tests._plugins imports by name and test folders never
shadow the hub or protocols packages."""
