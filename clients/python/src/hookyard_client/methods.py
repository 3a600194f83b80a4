"""Resources written once for both clients.

A resource method is written as a function that *describes* its request (a
:class:`~hookyard_client.core.Call`, or a :class:`~hookyard_client.core.Listing` for a
paged list) and is decorated with :class:`operation` or :class:`listing`. Read from a
resource of the blocking client (``Resource[Sync]``) the method returns the result; read
from one of the asyncio client (``Resource[Async]``) it returns an awaitable (a list: an
async iterator). The overloads of ``__get__`` give type checkers exactly those types.

Each method's docstring names its route and says whether the client retries it (the rules
are in :mod:`hookyard_client.core`). ``page_size`` of a list is the API's ``limit`` (1 to
1000, default 50): it only changes how many requests a full iteration takes.
"""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, final, overload

from hookyard_client.core import Call, Listing
from hookyard_client.transport import Transport

P = ParamSpec("P")
T = TypeVar("T")


@final
class Sync:
    """Marker of the blocking client's resources."""


@final
class Async:
    """Marker of the asyncio client's resources."""


M = TypeVar("M", Sync, Async)


class Resource(Generic[M]):
    def __init__(self, transport: Transport) -> None:
        self._transport = transport


class _Method:
    """A resource method: ``build`` describes the request, the transport's ``_via`` performs it."""

    _via: ClassVar[str]

    def __init__(self, build: Callable[..., Any]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self.__wrapped__ = build

    def _bind(self, obj: Resource[Any]) -> Callable[..., Any]:
        build, perform = self._build, getattr(obj._transport, self._via)

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return perform(build(obj, *args, **kwargs))

        return method


class operation(_Method, Generic[P, T]):  # lower case: used as a decorator, like ``property``
    """A method that makes one call: the result (sync) or an awaitable of it (async)."""

    _via = "run"

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> "operation[P, T]": ...
    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: Resource[Async], owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)


class listing(_Method, Generic[P, T]):  # lower case: used as a decorator, like ``property``
    """A method that lists: an iterator (sync) or async iterator over every item of every page.

    Pages are fetched lazily, one request per page, following ``next_cursor`` to the end.
    """

    _via = "iterate"

    def __init__(self, build: Callable[Concatenate[Any, P], Listing[T]]) -> None:
        super().__init__(build)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> "listing[P, T]": ...
    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, obj: Resource[Async], owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self._bind(obj)
