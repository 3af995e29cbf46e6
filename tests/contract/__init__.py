"""Shared contract suites: what every implementation of an adapter interface must do.

Like napalm's shared driver tests, a suite here is a plain class (no ``Test`` prefix, so pytest
does not collect it on its own); a backend's test module subclasses it as ``Test<Backend>Contract``
and provides the fixtures the suite names.
"""
