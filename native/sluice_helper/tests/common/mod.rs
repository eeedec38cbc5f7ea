//! What the helper program's integration tests share: playing the BEAM. Start the real
//! binary, read `hello` on the port, connect to the fd socket, send spawn requests with a
//! fresh channel each (inline, or in a memfd when large), and talk on the channels.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    connect, recvmsg, sendmsg, setsockopt, socket, socketpair, sockopt, AddressFamily,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use sluice_protocol::{
    encode_frame, ExitStatus as Status, Reply, Request, Role, SpawnSpec, Stage, StderrMode,
    MAX_INLINE_LEN, MEMFD_PAYLOAD,
};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A shell that ignores SIGTERM (kept across exec) and says "ready" once it does.
pub const TERM_IGNORED: &str = "trap '' TERM; echo ready; exec sleep 100";

/// Starts `sluice_helper` with this test process as its "BEAM".
pub fn start_helper(cgroup: &str, shutdown_grace_ms: u32) -> Child {
    helper_command(cgroup, shutdown_grace_ms)
        .spawn()
        .expect("start sluice_helper")
}

/// The command that starts `sluice_helper`, for a test to adjust before spawning it.
pub fn helper_command(cgroup: &str, shutdown_grace_ms: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice_helper"));
    command
        .args([
            "--beam-pid",
            &std::process::id().to_string(),
            "--cgroup",
            cgroup,
            "--shutdown-grace-ms",
            &shutdown_grace_ms.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

/// Reads one `{packet, 4}` frame from the helper program's stdout; `None` at EOF.
pub fn read_reply(stdout: &mut ChildStdout) -> Option<Reply> {
    let mut len = [0u8; 4];
    stdout.read_exact(&mut len).ok()?;
    let mut payload = vec![0; u32::from_be_bytes(len) as usize];
    stdout.read_exact(&mut payload).ok()?;
    Some(Reply::decode(&payload).expect("the helper program sent a bad frame"))
}

/// Connects to the fd socket named in `hello`.
pub fn connect_socket(socket_path: &[u8]) -> OwnedFd {
    let sock = seqpacket_socket();
    let path = std::ffi::OsStr::new(std::str::from_utf8(socket_path).unwrap());
    connect(sock.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    sock
}

fn seqpacket_socket() -> OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

/// Waits up to `timeout` for the helper program to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < end, "the helper program did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A spawn spec for `argv` with a plain PATH and stderr inherited.
pub fn spec(argv: &[&str]) -> SpawnSpec {
    SpawnSpec {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: Some(vec![b"PATH=/usr/local/bin:/usr/bin:/bin".to_vec()]),
        cd: None,
        stderr: StderrMode::Inherit,
        ..SpawnSpec::default()
    }
}

/// Sends one message with `fds` as `SCM_RIGHTS`.
pub fn send_msg(sock: BorrowedFd<'_>, payload: &[u8], fds: &[RawFd]) -> nix::Result<usize> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(payload)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

/// A memfd holding `content`.
pub fn memfd(content: &[u8]) -> OwnedFd {
    let fd =
        nix::sys::memfd::memfd_create(c"sluice-request", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(content).unwrap();
    f.into()
}

/// The BEAM's end of a program channel.
pub struct Channel {
    pub fd: OwnedFd,
}

/// What arrived on a channel.
#[derive(Debug)]
pub enum Incoming {
    Reply(Reply, Vec<OwnedFd>),
    Eof,
}

impl Channel {
    /// A socketpair: our end (with a receive timeout) and the end for the helper program.
    pub fn pair() -> (Channel, OwnedFd) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        setsockopt(&ours, sockopt::ReceiveTimeout, &TimeVal::new(10, 0)).unwrap();
        (Channel { fd: ours }, theirs)
    }

    pub fn recv(&self) -> Incoming {
        let mut buf = vec![0u8; 65536];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on the channel (timed out?)");
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these fds for us.
                fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        if n == 0 && fds.is_empty() {
            return Incoming::Eof;
        }
        let reply = Reply::decode(&buf[..n]).expect("the helper program sent a bad reply");
        Incoming::Reply(reply, fds)
    }

    /// The next reply, which must carry no fds.
    pub fn reply(&self) -> Reply {
        match self.recv() {
            Incoming::Reply(r, fds) => {
                assert!(fds.is_empty(), "{r:?} came with fds");
                r
            }
            Incoming::Eof => panic!("the channel closed"),
        }
    }

    pub fn expect_eof(&self) {
        match self.recv() {
            Incoming::Eof => {}
            Incoming::Reply(r, _) => panic!("expected EOF, got {r:?}"),
        }
    }

    pub fn send(&self, req: &Request) {
        self.send_raw(&req.encode());
    }

    pub fn send_raw(&self, payload: &[u8]) {
        send_msg(self.fd.as_fd(), payload, &[]).unwrap();
    }

    /// A spawn error's id, errno and stage; the helper program closes the channel after it.
    pub fn expect_spawn_error(&self) -> (u64, String, Stage) {
        match self.reply() {
            Reply::SpawnError {
                id, errno, stage, ..
            } => {
                self.expect_eof();
                (id, errno, stage)
            }
            other => panic!("expected spawn_error, got {other:?}"),
        }
    }

    /// An error about program `id`: its message.
    pub fn expect_error_for(&self, id: u64) -> String {
        match self.reply() {
            Reply::Error { id: got, message } => {
                assert_eq!(got, Some(id), "{message}");
                message
            }
            other => panic!("expected error, got {other:?}"),
        }
    }

    pub fn expect_exit(&self, id: u64) -> Status {
        match self.reply() {
            Reply::Exit {
                id: got, status, ..
            } => {
                assert_eq!(got, id);
                status
            }
            other => panic!("expected exit, got {other:?}"),
        }
    }
}

/// A running program as the BEAM holds it.
pub struct Program {
    pub channel: Channel,
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// A pseudo-terminal's master (spec key `pty`).
    pub pty: Option<OwnedFd>,
}

/// The helper program, driven the way the BEAM drives it.
pub struct Beam {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub port: Receiver<Reply>,
    pub sock: OwnedFd,
    pub cgroup_root: Option<Vec<u8>>,
    pub pid: i32,
}

impl Beam {
    pub fn start(cgroup: &str, shutdown_grace_ms: u32) -> Beam {
        Beam::start_child(start_helper(cgroup, shutdown_grace_ms))
    }

    /// Plays the BEAM for a helper program started by the caller.
    pub fn start_child(mut child: Child) -> Beam {
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            while let Some(reply) = read_reply(&mut stdout) {
                if tx.send(reply).is_err() {
                    return;
                }
            }
        });
        let hello = rx.recv_timeout(TIMEOUT).expect("hello");
        let Reply::Hello {
            version,
            socket_path,
            helper_pid,
            cgroup_root,
        } = hello
        else {
            panic!("expected hello, got {hello:?}");
        };
        assert_eq!(version, 2);
        assert_eq!(helper_pid, child.id());
        let sock = connect_socket(&socket_path);
        let pid = child.id() as i32;
        Beam {
            stdin: child.stdin.take(),
            child,
            port: rx,
            sock,
            cgroup_root,
            pid,
        }
    }

    /// Sends a spawn request (inline, or in a memfd when over the inline limit) with a new
    /// channel, and returns our end of it.
    pub fn request(&self, id: u64, spec: SpawnSpec) -> Channel {
        self.request_raw(
            &Request::Spawn {
                id,
                spec: Box::new(spec),
            }
            .encode(),
        )
    }

    /// Sends raw ETF bytes as a spawn request with a new channel.
    pub fn request_raw(&self, etf: &[u8]) -> Channel {
        let (ours, theirs) = Channel::pair();
        if etf.len() > MAX_INLINE_LEN {
            let m = memfd(etf);
            send_msg(
                self.sock.as_fd(),
                MEMFD_PAYLOAD,
                &[theirs.as_raw_fd(), m.as_raw_fd()],
            )
            .unwrap();
        } else {
            send_msg(self.sock.as_fd(), etf, &[theirs.as_raw_fd()]).unwrap();
        }
        ours
    }

    /// Spawns and checks the `spawned` reply and its fds.
    pub fn spawn(&self, id: u64, spec: SpawnSpec) -> Program {
        let channel = self.request(id, spec);
        let (reply, fds) = match channel.recv() {
            Incoming::Reply(r, fds) => (r, fds),
            Incoming::Eof => panic!("the channel closed instead of spawned"),
        };
        let Reply::Spawned {
            id: got,
            os_pid,
            roles,
            ..
        } = reply
        else {
            panic!("expected spawned, got {reply:?}");
        };
        assert_eq!(got, id);
        assert_eq!(roles.len(), fds.len());
        let mut p = Program {
            channel,
            pid: os_pid as i32,
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
        };
        for (role, fd) in roles.into_iter().zip(fds) {
            match role {
                // A private channel's pipes stand for the data pipes here.
                Role::Stdin | Role::Fd3 => p.stdin = Some(fd),
                Role::Stdout | Role::Fd4 => p.stdout = Some(fd),
                Role::Stderr => p.stderr = Some(fd),
                Role::Pty => p.pty = Some(fd),
            }
        }
        p
    }

    /// Writes one frame on the port's stdin.
    pub fn send_port(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&encode_frame(payload))?;
        stdin.flush()
    }

    pub fn port_reply(&self) -> Reply {
        self.port
            .recv_timeout(TIMEOUT)
            .expect("a reply on the port")
    }

    /// Closes stdin (the "VM died" signal) and waits for the helper program to exit.
    pub fn stop(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_exit(&mut self.child, TIMEOUT)
    }
}

impl Drop for Beam {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let end = Instant::now() + TIMEOUT;
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    out
}

pub fn read_line(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = nix::unistd::read(fd, &mut b).unwrap();
        if n == 0 || b[0] == b'\n' {
            return String::from_utf8(out).unwrap();
        }
        out.push(b[0]);
    }
}

/// Whether `pid` is gone or a zombie.
pub fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

/// Waits up to 5 s for `pid` to be dead.
pub fn wait_dead(pid: i32) -> bool {
    wait_until(|| dead(pid))
}

pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}
