"""The local, Docker-free stack: every real service the product needs, run from this clone."""
