"""Self-hosted webhooks: signed, retried, durable HTTP deliveries on Redis and RQ."""

from importlib import metadata

# The distribution's name (``pip install hookyard``); the import packages and the ``webhooks``
# command keep theirs. Its version, from the installed metadata, is the one version of the code.
DISTRIBUTION = "hookyard"
try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # a source tree used without being installed
    __version__ = "0+unknown"
