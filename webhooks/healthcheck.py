"""``python -m webhooks.healthcheck [URL]``: a container health check that needs nothing but Python.

Exit status 0 when ``URL`` answers 200 within ``--timeout-s`` (default 3), 1 otherwise, with one
line on stderr naming what failed. ``URL`` defaults to the API's liveness route on this host,
``http://127.0.0.1:$WEBHOOKS_API_PORT/healthz`` (port 8000 when unset); workers and the scheduler
pass their metrics URL (``http://127.0.0.1:9100/metrics`` with ``WEBHOOKS_METRICS_PORT=9100``).
It reads no other setting and never raises: a bad URL is a failed check, not a traceback.
"""

import argparse
import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 8000


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('WEBHOOKS_API_PORT') or DEFAULT_PORT}/healthz"


def check(url: str, timeout_s: float) -> str | None:
    """``None`` when ``url`` answers 200, else the reason in a few words (for the log line)."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url!r}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webhooks.healthcheck", description=__doc__)
    parser.add_argument("url", nargs="?", default=None, help="defaults to the API's /healthz on this host")
    parser.add_argument("--timeout-s", type=float, default=3.0)
    args = parser.parse_args(argv)
    problem = check(args.url or default_url(), args.timeout_s)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
