"""hotswap_runtime.fleet: releases published to a channel, followed by every worker (README "Fleet")."""

from .channel import (
    ArtifactRef,
    Channel,
    ChannelError,
    ChannelUnavailable,
    PublishConflict,
    Release,
    in_cohort,
)

__all__ = [
    "ArtifactRef",
    "Channel",
    "ChannelError",
    "ChannelUnavailable",
    "PublishConflict",
    "Release",
    "in_cohort",
]
