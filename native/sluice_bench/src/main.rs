//! Native baselines for Sluice's benchmark suite (`bench/run.exs`): what the machine can do
//! without the BEAM, measured the same way as the Elixir contenders.
//!
//! ```text
//! sluice_bench spawn N [std|fork]          spawn and wait for /bin/true N times
//!                                          prints ns_per_spawn=<ns>
//! sluice_bench read SIZE [TOTAL [PIPE]]    read `head -c TOTAL /dev/zero` (default 1 GiB)
//!                                          with SIZE-byte reads, optional F_SETPIPE_SZ
//!                                          prints bytes_per_sec=<n> bytes=<n>
//! sluice_bench read-cmd SIZE -- ARGV...    read a program's whole stdout with SIZE-byte
//!                                          reads; prints bytes_per_sec=<n> bytes=<n>
//! sluice_bench pty-read SIZE TOTAL         read `head -c TOTAL /dev/zero` running on a
//!                                          pseudo-terminal (opost off) from its master
//!                                          with SIZE-byte reads until EIO
//!                                          prints bytes_per_sec=<n> bytes=<n>
//! sluice_bench produce TOTAL [BLOCK]       write TOTAL bytes to stdout in BLOCK-byte
//!                                          writes (default 1 MiB) from one preallocated
//!                                          buffer; exits quietly (status 0) on EPIPE
//! sluice_bench echo-frames [IN OUT]        a request/response worker: reads {:packet, 4}
//!                                          frames on fd IN (default 0) and writes each
//!                                          back on fd OUT (default 1), until EOF
//! sluice_bench flood-frames SIZE           writes SIZE-byte {:packet, 4} frames to
//!                                          stdout forever; exits quietly on EPIPE
//! ```
//!
//! `produce` is a producer that is not the bottleneck: `head -c N /dev/zero` copies every
//! block from `/dev/zero` before writing it, `produce` only writes.
//!
//! `spawn std` uses `std::process::Command` (posix_spawn, i.e. `clone(CLONE_VM|CLONE_VFORK)`
//! on glibc), the fastest way there is; `spawn fork` uses `fork` + `execve` + `waitpid`, what a
//! helper that must run code in the child before `exec` (setsid, prctl, dup2) can do.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const DEFAULT_TOTAL: u64 = 1 << 30;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["spawn", n] => spawn(n, "std"),
        ["spawn", n, mode] => spawn(n, mode),
        ["read", size] => read(size, None, None),
        ["read", size, total] => read(size, Some(total), None),
        ["read", size, total, pipe] => read(size, Some(total), Some(pipe)),
        ["read-cmd", size, "--", argv @ ..] if !argv.is_empty() => read_cmd(size, argv),
        ["pty-read", size, total] => pty_read(size, total),
        ["produce", total] => produce(total, None),
        ["produce", total, block] => produce(total, Some(block)),
        ["echo-frames"] => echo_frames(0, 1),
        ["echo-frames", "3", "4"] => echo_frames(3, 4),
        ["flood-frames", size] => flood_frames(size),
        _ => Err(
            "usage: sluice_bench spawn N [std|fork] | read SIZE [TOTAL [PIPE_SIZE]] \
             | read-cmd SIZE -- ARGV... | pty-read SIZE TOTAL | produce TOTAL [BLOCK] \
             | echo-frames [3 4] | flood-frames SIZE"
                .to_string(),
        ),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("sluice_bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn number(arg: &str, what: &str) -> Result<u64, String> {
    match arg.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} must be a positive integer, got {arg:?}")),
    }
}

/// Spawns and waits for `/bin/true` `n` times; returns the mean ns per spawn.
fn spawn(n: &str, mode: &str) -> Result<String, String> {
    let n = number(n, "N")?;
    let once: fn() -> Result<(), String> = match mode {
        "std" => spawn_std,
        "fork" => spawn_fork,
        other => return Err(format!("unknown spawn mode {other:?} (std or fork)")),
    };
    let start = Instant::now();
    for _ in 0..n {
        once()?;
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    Ok(format!("ns_per_spawn={ns}"))
}

fn spawn_std() -> Result<(), String> {
    let status = Command::new("/bin/true")
        .status()
        .map_err(|e| format!("spawn /bin/true: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("/bin/true ended with {status}"))
    }
}

fn spawn_fork() -> Result<(), String> {
    let path = CString::new("/bin/true").expect("no NUL byte");
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: the child only calls the async-signal-safe execve and _exit; the pointers
    // stay valid across fork (same address space copy).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; argv and envp are NULL-terminated arrays of C strings.
        unsafe {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid: {err}"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("/bin/true ended with wait status {status}"))
    }
}

/// Reads `total` bytes of `head -c total /dev/zero` with `size`-byte reads and discards them.
fn read(size: &str, total: Option<&str>, pipe: Option<&str>) -> Result<String, String> {
    let size = usize::try_from(number(size, "SIZE")?).map_err(|e| e.to_string())?;
    let total = total.map_or(Ok(DEFAULT_TOTAL), |t| number(t, "TOTAL"))?;
    let pipe = pipe.map(|p| number(p, "PIPE_SIZE")).transpose()?;
    let mut buf = vec![0u8; size];

    let start = Instant::now();
    let mut child = Command::new("head")
        .args(["-c", &total.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn head: {e}"))?;
    let mut out = child.stdout.take().expect("stdout is piped");
    if let Some(pipe) = pipe {
        let pipe = libc::c_int::try_from(pipe).map_err(|e| e.to_string())?;
        // SAFETY: fcntl on an fd we own; F_SETPIPE_SZ takes an int.
        if unsafe { libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, pipe) } < 0 {
            return Err(format!("F_SETPIPE_SZ: {}", std::io::Error::last_os_error()));
        }
    }
    let bytes = drain(&mut out, &mut buf)?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() || bytes != total {
        return Err(format!(
            "head ended with {status} after {bytes} of {total} bytes"
        ));
    }
    let rate = (bytes as f64 / secs) as u64;
    Ok(format!("bytes_per_sec={rate} bytes={bytes}"))
}

/// Reads `out` to EOF with reads of `buf`'s size, discarding the data; returns the byte count.
fn drain(out: &mut impl Read, buf: &mut [u8]) -> Result<u64, String> {
    let mut bytes: u64 = 0;
    loop {
        match out.read(buf) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Reads the whole stdout of `argv` with `size`-byte reads and discards it.
fn read_cmd(size: &str, argv: &[&str]) -> Result<String, String> {
    let size = usize::try_from(number(size, "SIZE")?).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; size];

    let start = Instant::now();
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", argv[0]))?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let bytes = drain(&mut out, &mut buf)?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!(
            "{} ended with {status} after {bytes} bytes",
            argv[0]
        ));
    }
    let rate = (bytes as f64 / secs) as u64;
    Ok(format!("bytes_per_sec={rate} bytes={bytes}"))
}

/// Reads `head -c total /dev/zero` through a pseudo-terminal: the slave is the program's
/// stdin, stdout and stderr, with output processing off (so bytes pass unchanged); the
/// master is read with `size`-byte reads until EIO, a terminal's end.
fn pty_read(size: &str, total: &str) -> Result<String, String> {
    let size = usize::try_from(number(size, "SIZE")?).map_err(|e| e.to_string())?;
    let total = number(total, "TOTAL")?;
    let mut buf = vec![0u8; size];

    let start = Instant::now();
    let (mut master, slave) = open_pty()?;
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| e.to_string());
    let mut child = Command::new("head")
        .args(["-c", &total.to_string(), "/dev/zero"])
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?)
        .spawn()
        .map_err(|e| format!("spawn head: {e}"))?;
    // Our copy closes, or the master would never read EIO.
    drop(slave);
    let mut bytes: u64 = 0;
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() || bytes != total {
        return Err(format!(
            "head ended with {status} after {bytes} of {total} bytes"
        ));
    }
    let rate = (bytes as f64 / secs) as u64;
    Ok(format!("bytes_per_sec={rate} bytes={bytes}"))
}

/// A pseudo-terminal (master as a File, slave) with output processing off.
fn open_pty() -> Result<(std::fs::File, OwnedFd), String> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds through valid pointers; name, termios and winsize
    // may be NULL. The fds are ours and wrapped at once.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just opened by openpty and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain data; tcgetattr/tcsetattr read and write it on our slave fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) != 0 {
            return Err(format!("tcgetattr: {}", std::io::Error::last_os_error()));
        }
        t.c_oflag &= !libc::OPOST;
        t.c_lflag &= !libc::ECHO;
        if libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(format!("tcsetattr: {}", std::io::Error::last_os_error()));
        }
    }
    Ok((std::fs::File::from(master), slave))
}

/// Writes `total` bytes to stdout in `block`-byte writes from one preallocated buffer.
/// A reader that goes away (EPIPE) ends it quietly with status 0; prints nothing else.
fn produce(total: &str, block: Option<&str>) -> Result<String, String> {
    let total = number(total, "TOTAL")?;
    let block = usize::try_from(block.map_or(Ok(1 << 20), |b| number(b, "BLOCK"))?)
        .map_err(|e| e.to_string())?;
    // SIGPIPE would kill us before write returns EPIPE.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let buf = vec![b'x'; block];
    let mut left = total;
    while left > 0 {
        let len = usize::try_from(left.min(block as u64)).expect("at most block");
        // SAFETY: writing from a live buffer of at least `len` bytes to fd 1.
        let n = unsafe { libc::write(1, buf.as_ptr().cast(), len) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EPIPE) => std::process::exit(0),
                _ => return Err(format!("write: {err}")),
            }
        }
        left -= n as u64;
    }
    std::process::exit(0)
}

/// Echoes {:packet, 4} frames from fd `input` to fd `output` until EOF: the worker of the
/// request/response benchmark, as cheap as a worker can be, so the figures are the BEAM
/// side's.
fn echo_frames(input: i32, output: i32) -> Result<String, String> {
    // SAFETY: fds `input` and `output` are this process's for its whole life; the Files
    // take them over and are never dropped before exit.
    let (mut input, mut output) = unsafe { (File::from_raw_fd(input), File::from_raw_fd(output)) };
    let mut frame = Vec::new();
    loop {
        let mut header = [0u8; 4];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => std::process::exit(0),
            Err(e) => return Err(format!("read: {e}")),
        }
        frame.resize(u32::from_be_bytes(header) as usize, 0);
        input
            .read_exact(&mut frame)
            .map_err(|e| format!("read: {e}"))?;
        let reply = [&header[..], &frame].concat();
        output
            .write_all(&reply)
            .map_err(|e| format!("write: {e}"))?;
    }
}

/// Writes SIZE-byte {:packet, 4} frames to stdout forever (in blocks of many frames); a
/// reader that goes away (EPIPE) ends it quietly.
fn flood_frames(size: &str) -> Result<String, String> {
    let size = usize::try_from(number(size, "SIZE")?).map_err(|e| e.to_string())?;
    let frame = u32::try_from(size).map_err(|e| e.to_string())?;
    let one = [&frame.to_be_bytes()[..], &vec![b'x'; size]].concat();
    let block = one.repeat((65_536 / one.len()).max(1));
    // SAFETY: fd 1 is this process's stdout for its whole life; never dropped before exit.
    let mut out = unsafe { File::from_raw_fd(1) };
    loop {
        if let Err(e) = out.write_all(&block) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            return Err(format!("write: {e}"));
        }
    }
}
