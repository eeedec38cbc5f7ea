//! Command-line arguments: `--beam-pid N --cgroup auto|off|PATH --shutdown-grace-ms N`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

/// Where program cgroups live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// Find a writable cgroup v2 hierarchy, or run without cgroups.
    Auto,
    /// No cgroups.
    Off,
    /// Exactly this directory (created when missing).
    Path(PathBuf),
}

/// Parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Only a connection from this pid is accepted on the fd socket.
    pub beam_pid: i32,
    pub cgroup: CgroupMode,
    /// How long programs get between SIGTERM and SIGKILL when the helper shuts down.
    pub shutdown_grace: Duration,
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Args, String> {
    let mut beam_pid = None;
    let mut cgroup = CgroupMode::Auto;
    let mut grace = Duration::from_millis(1000);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("unexpected argument {a:?}"))?;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(OsString::from(v))),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--beam-pid" => {
                let v = value()?;
                let pid = v
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("--beam-pid: not a pid: {v:?}"))?;
                beam_pid = Some(pid);
            }
            "--cgroup" => {
                let v = value()?;
                cgroup = match v.to_str() {
                    Some("auto") => CgroupMode::Auto,
                    Some("off") => CgroupMode::Off,
                    _ if v.is_empty() => return Err("--cgroup: empty path".into()),
                    _ => CgroupMode::Path(PathBuf::from(OsString::from_vec(v.into_vec()))),
                };
            }
            "--shutdown-grace-ms" => {
                let v = value()?;
                let ms = v
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("--shutdown-grace-ms: not a number: {v:?}"))?;
                grace = Duration::from_millis(ms);
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Args {
        beam_pid: beam_pid.ok_or("--beam-pid is required")?,
        cgroup,
        shutdown_grace: grace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_all_forms() {
        let a = p(&[
            "--beam-pid",
            "12",
            "--cgroup",
            "off",
            "--shutdown-grace-ms=250",
        ])
        .unwrap();
        assert_eq!(a.beam_pid, 12);
        assert_eq!(a.cgroup, CgroupMode::Off);
        assert_eq!(a.shutdown_grace, Duration::from_millis(250));
        let a = p(&["--beam-pid=3", "--cgroup=/sys/fs/cgroup/x"]).unwrap();
        assert_eq!(a.cgroup, CgroupMode::Path("/sys/fs/cgroup/x".into()));
        assert_eq!(a.shutdown_grace, Duration::from_millis(1000));
        assert_eq!(p(&["--beam-pid", "3"]).unwrap().cgroup, CgroupMode::Auto);
    }

    #[test]
    fn rejects_bad_args() {
        assert!(p(&[]).is_err());
        assert!(p(&["--beam-pid"]).is_err());
        assert!(p(&["--beam-pid", "x"]).is_err());
        assert!(p(&["--beam-pid", "-1"]).is_err());
        assert!(p(&["--beam-pid", "1", "--bogus"]).is_err());
        assert!(p(&["--beam-pid", "1", "--shutdown-grace-ms", "soon"]).is_err());
        assert!(p(&["--beam-pid", "1", "--cgroup", ""]).is_err());
    }
}
