//! Agent federation test helpers (filled by the agent work).
