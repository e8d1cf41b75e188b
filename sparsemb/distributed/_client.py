"""Reaching a Dask cluster: a Client given, or one made from a scheduler address, and one clear error
when that fails."""
from __future__ import annotations

import distributed


class SchedulerError(OSError):
    """The Dask scheduler could not be reached (a wrong address, a cluster that is down or closed)."""


def connect(client):
    """``client`` itself if it is a running :class:`distributed.Client`, else a Client connected to
    the scheduler address it names (the connect timeout is Dask's ``distributed.comm.timeouts.connect``).

    Raises
    ------
    SchedulerError
        If the address cannot be reached, or the Client given is closed; the message names it.
    TypeError
        If ``client`` is neither a Client nor an address.
    """
    if isinstance(client, distributed.Client):
        if client.status != "running":
            raise SchedulerError(f"the Dask client is {client.status}, not running: {client}")
        return client
    if not isinstance(client, str):
        raise TypeError(f"client must be a distributed.Client or a scheduler address, "
                        f"got {type(client).__name__}")
    try:
        return distributed.Client(client, set_as_default=False)
    except (OSError, ValueError, TypeError) as err:  # TimeoutError is an OSError
        raise SchedulerError(f"cannot reach the Dask scheduler at {client!r}: {err}") from None

