//! The native EVM engine of `workers.evm`: revm's interpreter (opcodes, gas, precompiles) under a
//! state layer that records exactly the read and write sets of the reference engine (py-evm over
//! `TrackedAccountDB`), plus sequential and multi-threaded block executors. Python sees it as
//! `workers.evm._native` (see `python.rs`, built by maturin with the `python` feature).

pub mod evm;
pub mod exec;
pub mod types;

#[cfg(feature = "python")]
mod python;

pub use types::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
