"""Qala's test suite. A package so that tests._plugins imports by name and test folders never shadow hub/ or protocols/."""
