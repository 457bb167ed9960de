"""Put the repository root on sys.path so tests run from a checkout without installing."""
