from tests.support.netns import make_netns_lab  # noqa: F401
from tests.support.redis_cluster import make_redis_cluster  # noqa: F401
