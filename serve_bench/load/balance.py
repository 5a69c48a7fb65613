"""Client-side balancing over the endpoints of one fleet: which replica gets the next request.

A fleet is several OpenAI-compatible servers of the same model (``--url`` given more than once, or a
study's ``server.endpoints``). Each load-generator process balances its own requests, as a client-side
balancer in each client would: with ``least-outstanding`` (the default, as Envoy's and gRPC's
least-request policies) a request goes to the endpoint with the fewest of this process's requests in
flight, ties broken in turn, so a slower replica gets fewer; with ``round-robin`` (AIPerf's only policy)
each endpoint in turn, whatever its speed. Written here because neither Locust nor geventhttpclient
balances across hosts; the load generator is cooperative (gevent), so no lock is needed.

An endpoint whose connections are refused several times in a row, and which then refuses a fresh
connection, is dead: it gets no more requests in the stage (its finished records are kept), and the
stage goes on with the rest of the fleet, or stops when the run says so (``on_server_death: stop``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

Balance = Literal["least-outstanding", "round-robin"]
BALANCE_POLICIES: tuple[str, ...] = ("least-outstanding", "round-robin")
DEFAULT_BALANCE: Balance = "least-outstanding"


class Balancer:
    """One load-generator process's view of the fleet. ``is_refused(url)`` checks a suspect with a fresh
    connection once it has been refused ``threshold`` times in a row."""

    def __init__(self, endpoints: Sequence[str], policy: str = DEFAULT_BALANCE, *,
                 is_refused: Callable[[str], bool] | None = None, threshold: int = 3) -> None:
        if not endpoints:
            raise ValueError("a balancer needs at least one endpoint")
        if policy not in BALANCE_POLICIES:
            raise ValueError(f"unknown balance policy {policy!r}; valid: {', '.join(BALANCE_POLICIES)}")
        self.endpoints = list(endpoints)
        self.policy = policy
        self.outstanding = [0] * len(self.endpoints)
        self.refused = [0] * len(self.endpoints)  # consecutive refused connections, per endpoint
        self.dead: set[int] = set()
        self.is_refused = is_refused
        self.threshold = threshold
        self._next = 0

    def pick(self, prefer: int | None = None) -> int | None:
        """The endpoint for the next request (counted as outstanding until :meth:`done`); None when every
        endpoint is dead. ``prefer``: the endpoint a conversation's earlier turns went to, kept while it lives
        (its prefix cache holds the history)."""
        if prefer is not None and prefer not in self.dead:
            self.outstanding[prefer] += 1
            return prefer
        n = len(self.endpoints)
        order = [(self._next + k) % n for k in range(n)]
        live = [i for i in order if i not in self.dead]
        if not live:
            return None
        i = live[0] if self.policy == "round-robin" else min(live, key=lambda j: self.outstanding[j])
        self._next = (i + 1) % n
        self.outstanding[i] += 1
        return i

    def done(self, i: int, refused: bool) -> None:
        """Endpoint ``i`` finished a request; ``refused``: its connection was refused."""
        self.outstanding[i] -= 1
        self.refused[i] = self.refused[i] + 1 if refused else 0
        if (refused and i not in self.dead and self.refused[i] >= self.threshold and self.is_refused is not None
                and self.is_refused(self.endpoints[i])):
            self.dead.add(i)

    def dead_urls(self) -> list[str]:
        return [self.endpoints[i] for i in sorted(self.dead)]

    @property
    def alive(self) -> int:
        return len(self.endpoints) - len(self.dead)
