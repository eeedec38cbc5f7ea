//! `Sluice.Native`: non-blocking I/O on pipe and terminal fds handed over by
//! `sluice_helper`, with readiness through `enif_select`. See `docs/architecture.md`, "The NIF".
//!
//! Every NIF is a regular (non-dirty) NIF and never blocks: all fds are `O_NONBLOCK`.

mod channel;
mod collector;
mod errno;
mod fd_resource;
mod io;
mod terminal;

mod atoms {
    rustler::atoms! {
        ok,
        error,
        eof,
        eagain,
        closed,
        noproc,
        enomem,
        emsgsize,
        select_failed,
        raw,
        canonical,
        unsupported,
        rejected,
    }
}

fn load(env: rustler::Env, _info: rustler::Term) -> bool {
    fd_resource::register(env) && collector::register(env)
}

rustler::init!("Elixir.Sluice.Native", load = load);
