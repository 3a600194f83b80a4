"""The attempt error's text: one line, bounded, no URL credentials, query or fragment."""

from workers.sender import ERROR_CHARS, _describe, one_line


def test_one_line_drops_url_secrets_and_line_breaks() -> None:
    text = (
        "InvalidUrlClientError: http://user:pw@hooks.example/p?token=abc#frag\n  and https://x.example/?k=v"
    )

    assert one_line(text) == "InvalidUrlClientError: http://hooks.example/p and https://x.example/"


def test_one_line_is_bounded() -> None:
    assert len(one_line("x" * 5000)) == ERROR_CHARS
    assert one_line("x" * 5000).endswith("...")


def test_an_unforeseen_failure_is_described_by_its_root_cause_without_the_query() -> None:
    try:
        try:
            raise ValueError("cannot use http://a.example/hook?sig=s3cr3t\nat all")
        except ValueError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        described = _describe(exc, 3)

    assert described == "ValueError: cannot use http://a.example/hook at all"
