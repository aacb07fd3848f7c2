"""Settings shared by every package's configuration."""

from __future__ import annotations

# torch.set_num_threads(100000) kills the process (a segfault), so every thread count is bounded.
MAX_THREADS = 1024
