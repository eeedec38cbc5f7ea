//! ETF control frames: filled in by the helper work.
