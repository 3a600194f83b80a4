"""The peers: webhook delivery written the way a Python team would write it without our platform."""
