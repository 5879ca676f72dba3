//! ficus-shadow: shadow mode — response comparison, noise learning, mismatch store, reports.
