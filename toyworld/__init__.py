"""The toy world and the bundled model trained on it (see world.py, train.py)."""
