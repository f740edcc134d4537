from typing import TypeAlias
from os.path import join as live_join

from .ok import live_fine

Live_Job = 3
Live_T: TypeAlias = int
