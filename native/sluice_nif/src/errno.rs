//! Errno values as the lowercase atoms Elixir code matches on (`:epipe`, `:ebadf`, ...).

use rustler::{Atom, Env, Term};

/// The errno of the last failed libc call on this thread.
pub fn last() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The lowercase name of `errno`, or `None` for a value this table does not know.
fn name(errno: i32) -> Option<&'static str> {
    let name = match errno {
        libc::EPERM => "eperm",
        libc::ENOENT => "enoent",
        libc::ESRCH => "esrch",
        libc::EINTR => "eintr",
        libc::EIO => "eio",
        libc::ENXIO => "enxio",
        libc::E2BIG => "e2big",
        libc::ENOEXEC => "enoexec",
        libc::EBADF => "ebadf",
        libc::ECHILD => "echild",
        libc::EAGAIN => "eagain",
        libc::ENOMEM => "enomem",
        libc::EACCES => "eacces",
        libc::EFAULT => "efault",
        libc::EBUSY => "ebusy",
        libc::EEXIST => "eexist",
        libc::EXDEV => "exdev",
        libc::ENODEV => "enodev",
        libc::ENOTDIR => "enotdir",
        libc::EISDIR => "eisdir",
        libc::EINVAL => "einval",
        libc::ENFILE => "enfile",
        libc::EMFILE => "emfile",
        libc::ENOTTY => "enotty",
        libc::ETXTBSY => "etxtbsy",
        libc::EFBIG => "efbig",
        libc::ENOSPC => "enospc",
        libc::ESPIPE => "espipe",
        libc::EROFS => "erofs",
        libc::EMLINK => "emlink",
        libc::EPIPE => "epipe",
        libc::ERANGE => "erange",
        libc::EDEADLK => "edeadlk",
        libc::ENAMETOOLONG => "enametoolong",
        libc::ENOSYS => "enosys",
        libc::ELOOP => "eloop",
        libc::ENOTSOCK => "enotsock",
        libc::EMSGSIZE => "emsgsize",
        libc::EPROTOTYPE => "eprototype",
        libc::EPROTONOSUPPORT => "eprotonosupport",
        libc::EOPNOTSUPP => "eopnotsupp",
        libc::EAFNOSUPPORT => "eafnosupport",
        libc::EADDRINUSE => "eaddrinuse",
        libc::EADDRNOTAVAIL => "eaddrnotavail",
        libc::ENETDOWN => "enetdown",
        libc::ENETUNREACH => "enetunreach",
        libc::ECONNABORTED => "econnaborted",
        libc::ECONNRESET => "econnreset",
        libc::ENOBUFS => "enobufs",
        libc::EISCONN => "eisconn",
        libc::ENOTCONN => "enotconn",
        libc::ETIMEDOUT => "etimedout",
        libc::ECONNREFUSED => "econnrefused",
        libc::EHOSTUNREACH => "ehostunreach",
        libc::EALREADY => "ealready",
        libc::EINPROGRESS => "einprogress",
        libc::EDQUOT => "edquot",
        _ => return None,
    };
    Some(name)
}

/// `errno` as an atom: its lowercase name, or `errno_N` for an unknown value.
pub fn atom(env: Env<'_>, errno: i32) -> Atom {
    let made = match name(errno) {
        Some(name) => Atom::from_str(env, name),
        None => Atom::from_str(env, &format!("errno_{errno}")),
    };
    // Atom creation only fails for names longer than 255 characters, which these never are.
    made.unwrap_or_else(|_| crate::atoms::error())
}

/// `{:error, errno_atom}`.
pub fn error_tuple(env: Env<'_>, errno: i32) -> Term<'_> {
    env.error_tuple(atom(env, errno))
}
