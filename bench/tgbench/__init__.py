"""tenantgate benchmark harness helpers; bench/bench.py is the entry point (see bench/README.md)."""
