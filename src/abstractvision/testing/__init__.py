"""Test helpers: tiny, deterministic models built at test time (no downloads)."""
