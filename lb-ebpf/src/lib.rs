#![no_std]
// Intentionally empty: see the [lib] note in Cargo.toml.
