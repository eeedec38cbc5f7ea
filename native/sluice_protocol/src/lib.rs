//! The Sluice control protocol, shared by the helper and the NIF.
//!
//! * [`frame`]: the ETF frames exchanged between the BEAM and the helper over the port.
//! * [`handoff`]: the message that carries a program's pipe fds over the unix socket.
//!
//! See `docs/architecture.md` for the full description.

pub mod frame;
pub mod handoff;
