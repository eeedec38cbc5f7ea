//! Errno naming for replies.

use nix::errno::Errno;

/// The symbolic name of an errno value, like `"ENOENT"`.
pub fn errno_name(e: Errno) -> String {
    match e {
        Errno::UnknownErrno => "EUNKNOWN".to_string(),
        // nix's Errno is a fieldless enum whose variants are the C names.
        e => format!("{e:?}"),
    }
}

/// `strerror` text.
pub fn describe(e: Errno) -> &'static str {
    e.desc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(errno_name(Errno::ENOENT), "ENOENT");
        assert_eq!(errno_name(Errno::EACCES), "EACCES");
        assert_eq!(errno_name(Errno::ENOTDIR), "ENOTDIR");
        assert_eq!(errno_name(Errno::E2BIG), "E2BIG");
        assert_eq!(errno_name(Errno::EMFILE), "EMFILE");
        assert_eq!(errno_name(Errno::EAGAIN), "EAGAIN");
        assert_eq!(errno_name(Errno::from_raw(libc::ENFILE)), "ENFILE");
        assert_eq!(errno_name(Errno::from_raw(99999)), "EUNKNOWN");
        assert_eq!(describe(Errno::ENOENT), "No such file or directory");
    }
}
