//! The Sluice control protocol (version 2), shared by the helper program and the NIF; the
//! contract is `docs/protocol.md`.
//!
//! * [`etf`]: the checker that stands in front of `eetf` for every untrusted payload.
//! * [`term`]: building and reading terms; [`DecodeError`].
//! * [`request`]: BEAM → helper program (`spawn` and `manage` on the fd socket,
//!   `signal`/`kill` on a program channel); [`manage`]: the spec of `manage`.
//! * [`reply`]: helper program → BEAM (`hello` on the port, the rest on a program channel).
//! * [`pty`]: the `pty` key of a spawn spec (size and RFC 4254 terminal modes);
//!   [`modes`]: what each mode's opcode changes in a termios, for the helper program
//!   (a new terminal) and the NIF (a running program's terminal), syscalls left to them.
//! * [`redirect`]: files and `/dev/null` for stdin, stdout and stderr; [`control`]: the
//!   credentials, priority and limits a program runs with.
//! * [`usage`]: the details of an exit (every status of a pipeline, the usage).
//! * [`pipeline`]: the later stages of a kernel pipeline.
//! * [`sandbox`]: the `sandbox` key: namespaces, the filesystem view, the filters.
//! * [`stage`]: the stage names of `spawn_error`.
//! * [`framing`]: `{packet, 4}` frames on the port.
//!
//! The helper program only decodes requests and encodes replies; the other direction
//! (`Request::encode`, `Reply::decode`) is for tests and tools, behind the `codec` feature.

pub mod control;
pub mod etf;
pub mod framing;
pub mod manage;
pub mod modes;
pub mod pipeline;
pub mod pty;
pub mod redirect;
pub mod reply;
pub mod request;
pub mod sandbox;
pub mod stage;
pub mod term;
pub mod usage;

pub use control::{Control, Principal, Resource, Rlimit};
pub use framing::{encode_frame, FrameError, FrameReader, MAX_FRAME_LEN};
pub use manage::ManageSpec;
pub use pipeline::StageSpec;
pub use pty::PtySpec;
pub use redirect::{FileOutput, StdinMode};
pub use reply::{ExitStatus, Reply, Role};
pub use request::{Request, SpawnSpec, StderrMode, StdoutMode};
pub use sandbox::{ReadOnly, SandboxSpec};
pub use stage::Stage;
pub use term::DecodeError;
pub use usage::{ExitDetails, Usage, UsageSource};

/// The protocol version sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest spawn request sent inline on the fd socket; a larger one travels in a memfd.
pub const MAX_INLINE_LEN: usize = 64 * 1024;

/// The payload of a spawn message whose request is in the memfd sent with it.
pub const MEMFD_PAYLOAD: &[u8] = b"F";
