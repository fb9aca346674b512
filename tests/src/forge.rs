//! Forge test helpers (filled by the forge work).
