"""``gradflow run --distributed``: the flags checked before jax sees them.

jax hands the coordinator's address to gRPC and its timeouts to C++: a port
that is not a number crashed the process (segmentation fault), a missing port
raised an ``IndexError`` from inside jax, a heartbeat of 0 aborted with a C++
stack, and a process whose peers never came waited in silence. Each is a
one-line error here, raised before anything is written or initialised.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable

#: Exit status of a process whose peers did not join in time.
JOIN_FAILED = 3


class FlagError(ValueError):
    """A ``--distributed`` flag that cannot work (one line, exit status 2)."""


def parse_coordinator(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as ``(host, port)``.

    Raises:
        FlagError: no port, a port that is not a number in 1-65535, or no host.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise FlagError(
            f"--coordinator {address!r}: expected HOST:PORT (process 0's address "
            f"and a free port, e.g. 10.0.0.1:12345)"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise FlagError(
            f"--coordinator {address!r}: the port must be a number from 1 to 65535, "
            f"got {port!r}"
        )
    return host.strip("[]"), int(port)


def port_in_use(port: int) -> bool:
    """Whether this machine cannot listen on ``port`` (on every interface)."""
    for family, anywhere in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here: the IPv4 test decides
            continue
        with s:
            # As a server binds: a port left in TIME_WAIT by a finished run is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((anywhere, port))
            except OSError:
                return True
        return False
    return False


def check_flags(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    heartbeat_timeout: int,
    join_timeout: float,
) -> None:
    """Refuse flags that jax would crash or hang on.

    Raises:
        FlagError: naming the flag, what it must be and what came.
    """
    if heartbeat_timeout <= 0:
        raise FlagError(
            f"--heartbeat-timeout must be a positive number of seconds, got "
            f"{heartbeat_timeout}"
        )
    if not join_timeout > 0:
        raise FlagError(
            f"--join-timeout must be a positive number of seconds, got {join_timeout}"
        )
    if coordinator is None:
        return  # jax.distributed reads the cluster's environment
    _, port = parse_coordinator(coordinator)
    if num_processes < 1:
        raise FlagError(f"--num-processes must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise FlagError(
            f"--process-id must be from 0 to {num_processes - 1} (--num-processes "
            f"{num_processes}), got {process_id}"
        )
    if process_id == 0 and port_in_use(port):
        raise FlagError(
            f"--coordinator {coordinator}: port {port} is in use on this machine "
            f"(another program, or a run still going); process 0 listens there, "
            f"so choose a free port for every process"
        )


def join(
    initialize: Callable[..., None],
    *,
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    heartbeat_timeout: int,
    join_timeout: float,
) -> None:
    """Call ``initialize`` (``jax.distributed.initialize``), saying what it awaits.

    If the other processes have not joined after ``join_timeout`` seconds, the
    process prints which ones it waited for and exits with status
    :data:`JOIN_FAILED` (jax's own timeout aborts with a C++ stack instead).
    """
    who = (
        f"process {process_id} of {num_processes}"
        if coordinator is not None
        else "this process"
    )
    where = f" at {coordinator}" if coordinator is not None else ""
    print(
        f"gradflow: {who}: waiting up to {join_timeout:g} s for every process of "
        f"the run to join{where}",
        file=sys.stderr,
        flush=True,
    )

    def give_up() -> None:
        print(
            f"gradflow: error: {who}: the other processes did not join{where} "
            f"within {join_timeout:g} s (--join-timeout); start every process "
            f"with the same --coordinator and --num-processes, each with its own "
            f"--process-id",
            file=sys.stderr,
            flush=True,
        )
        # The main thread is inside jax's C++ connect; only exiting ends it.
        import os

        os._exit(JOIN_FAILED)

    timer = threading.Timer(join_timeout, give_up)
    timer.daemon = True
    timer.start()
    try:
        initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            heartbeat_timeout_seconds=heartbeat_timeout,
            # Past ours, so that our message, not jax's abort, is what is seen.
            initialization_timeout=int(join_timeout) + 30,
        )
    finally:
        timer.cancel()
