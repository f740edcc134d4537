"""``open_channel``: a channel from what a user writes (a folder path or a ``nats://`` URL)."""

from __future__ import annotations

import os
from typing import Any

from .channel import Channel

__all__ = ["open_channel"]

#: URL schemes of the NATS channel (README "Fleet"); anything else is a folder
NATS_SCHEMES = ("nats://", "tls://")


def open_channel(url: str | os.PathLike[str], **options: Any) -> Channel:
    """Open the channel ``url``: ``nats://HOST:PORT/NAME`` or ``tls://…`` is a NATS JetStream
    channel (needs ``hotswap[fleet]``), anything else a folder channel.

    Never fails on a channel it cannot reach or a folder that does not exist yet: the first
    call on the channel raises ``ChannelUnavailable`` instead, which a follower treats as away.

    Args:
        url: a folder path (``file://`` allowed) or a NATS URL.
        options: passed to the channel's constructor (``poll=`` for a folder; NATS options).
    """
    text = os.fspath(url)
    if text.lower().startswith(NATS_SCHEMES):
        from .nats import NatsChannel  # the fleet extra: imported only for a NATS channel

        return NatsChannel(text, **options)
    from .folder import FolderChannel

    if text.startswith("file://"):
        text = text[len("file://"):]
    return FolderChannel(text, **options)
