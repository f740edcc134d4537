"""hotswap_runtime.fleet: releases published to a channel, followed by every worker (README "Fleet")."""

from .channel import (
    ArtifactRef,
    Channel,
    ChannelError,
    ChannelUnavailable,
    PublishConflict,
    Release,
    cohort_bucket,
    in_cohort,
)
from .folder import FolderChannel
from .follower import Follower, InstanceStatus
from .open import open_channel

__all__ = [
    "ArtifactRef",
    "Channel",
    "ChannelError",
    "ChannelUnavailable",
    "FolderChannel",
    "Follower",
    "InstanceStatus",
    "PublishConflict",
    "Release",
    "cohort_bucket",
    "in_cohort",
    "open_channel",
]
