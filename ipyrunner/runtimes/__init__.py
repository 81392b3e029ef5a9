"""How a language gets an interpreter: `host` (this machine's)."""
