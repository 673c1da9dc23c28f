"""Test support: real servers the tests talk to over loopback."""
