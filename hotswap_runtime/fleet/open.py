"""``open_channel``: a channel from what a user writes (a folder path or a ``nats://`` URL)."""

from __future__ import annotations

import os
import re
from typing import Any

from .channel import Channel, ChannelError

__all__ = ["open_channel", "shown_url"]

#: URL schemes of the NATS channel (README "Fleet"); anything else is a folder
NATS_SCHEMES = ("nats://", "tls://")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def open_channel(url: str | os.PathLike[str], **options: Any) -> Channel:
    """Open the channel ``url``: ``nats://HOST:PORT/NAME`` or ``tls://…`` is a NATS JetStream
    channel (needs ``hotswap[fleet]``), anything else a folder channel.

    Never fails on a channel it cannot reach or a folder that does not exist yet: the first
    call on the channel raises ``ChannelUnavailable`` instead, which a follower treats as away.

    Raises:
        ChannelError: ``url`` is another kind of URL (``http://…``), or a NATS URL that is
            not well-formed.

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
    elif (scheme := _SCHEME.match(text)) is not None:
        # never a folder named "http:" under the working directory
        raise ChannelError(f"channel {text!r}: {scheme.group(1)!r} is not a kind of channel; give a "
                           "folder path (or file://PATH) or nats://HOST:PORT/NAME (tls:// for TLS)")
    return FolderChannel(text, **options)


def shown_url(url: str | os.PathLike[str]) -> str:
    """``url`` as messages show it: a NATS URL without ``user:pass@`` and without its query
    (``?token=``, ``?creds=``), so no secret reaches a deploy log; a folder unchanged."""
    text = os.fspath(url)
    if not text.lower().startswith(NATS_SCHEMES):
        return text
    scheme, _, rest = text.partition("://")
    netloc, slash, path = rest.partition("?")[0].partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
