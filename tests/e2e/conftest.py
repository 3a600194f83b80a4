from tests.support.netns import make_netns_lab  # noqa: F401
