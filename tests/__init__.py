"""Tests for the bitcoin_mining integration, its library and the site simulator."""
