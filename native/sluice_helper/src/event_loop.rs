//! The single-threaded event loop: poll and dispatch, nothing else. The poll set is
//! rebuilt every round (stdin, the signalfd, the fd socket, every open program channel,
//! and the channels and pidfds of adopted processes), which stays cheap for thousands of
//! programs; the timeout is the nearest kill deadline or housekeeping round.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::channels::{SocketEvent, SpawnSocket};
use crate::managed::Managed;
use crate::port::{Input, Port};
use crate::programs::Programs;
use crate::shutdown;
use crate::signals::Signals;
use crate::sys;

const BROKEN: libc::c_short = libc::POLLERR | libc::POLLNVAL;

pub struct Helper {
    pub port: Port,
    pub socket: SpawnSocket,
    pub signals: Signals,
    pub programs: Programs,
    pub managed: Managed,
    pub shutdown_grace: Duration,
}

fn timeout_ms(wake: Option<Instant>) -> i32 {
    wake.map_or(-1, |t| {
        let d = t.saturating_duration_since(Instant::now());
        // Round up so the loop does not wake just before the deadline and spin.
        d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    })
}

impl Helper {
    /// Runs until shutdown; returns the exit code.
    pub fn run(mut self) -> i32 {
        let mut fds = Vec::new();
        let mut keys = Vec::new();
        let mut watches = Vec::new();
        loop {
            fds.clear();
            keys.clear();
            watches.clear();
            fds.push(sys::pollfd(0, libc::POLLIN));
            fds.push(sys::pollfd(self.signals.raw_fd(), libc::POLLIN));
            fds.push(sys::pollfd(self.socket.fd().as_raw_fd(), libc::POLLIN));
            for (key, fd) in self.programs.channels() {
                keys.push(key);
                fds.push(sys::pollfd(fd, libc::POLLIN));
            }
            let adopted_at = fds.len();
            for (watch, fd) in self.managed.watched() {
                watches.push(watch);
                fds.push(sys::pollfd(fd, libc::POLLIN));
            }
            let wake = self.programs.next_wake().into_iter();
            if let Err(e) = sys::poll(
                &mut fds,
                timeout_ms(wake.chain(self.managed.next_wake()).min()),
            ) {
                eprintln!("sluice_helper: poll: {e}");
                return self.shutdown();
            }

            let mut stop = fds[1].revents != 0 && self.signals.drain();
            // Cheap (one waitpid when nothing exited), and robust against lost wake-ups.
            self.programs.reap();
            self.managed.on_reaped(self.programs.take_orphans());
            if fds[0].revents != 0 {
                stop |= self.on_stdin();
            }
            // Exit statuses went out above (reap), before anything else. Channels next: their
            // requests, and their closes, which stop a program still running at once; the
            // clean-up of programs that ended (is anything left? the cgroup back to the
            // pool) is settled after the spawns, below.
            for (key, pfd) in keys.iter().zip(&fds[3..adopted_at]) {
                if pfd.revents != 0 {
                    self.programs.on_channel(*key, pfd.revents & BROKEN != 0);
                }
            }
            for (watch, pfd) in watches.iter().zip(&fds[adopted_at..]) {
                if pfd.revents != 0 {
                    self.managed.on_ready(*watch, pfd.revents & BROKEN != 0);
                }
            }
            if fds[2].revents != 0 {
                stop |= self.on_socket(fds[2].revents & BROKEN != 0);
            }
            if self.programs.has_closed() && !stop {
                // Requests that came while this round was served go before the clean-up
                // too: a caller waits for its spawn, nobody for the clean-up. (Clean-ups
                // still come every round, so the pool of cgroups refills: with 32 pooled
                // cgroups, serving spawns first made 100 concurrent callers mkdir one for
                // most spawns; the pool is 256 deep now.)
                if sys::ready(self.socket.fd()) {
                    stop |= self.on_socket(false);
                }
                self.programs.settle_closed();
            }
            if stop || self.port.out_broken {
                return self.shutdown();
            }
            self.programs.tick();
            self.managed.tick();
        }
    }

    /// Returns whether the BEAM is gone.
    fn on_stdin(&mut self) -> bool {
        match self.port.read_stdin() {
            Input::Data => {
                self.port.answer_frames();
                false
            }
            Input::Nothing => false,
            Input::Eof => true,
            Input::Error(e) => {
                eprintln!("sluice_helper: reading stdin: {e}");
                true
            }
        }
    }

    /// Takes every queued spawn message. Returns whether the BEAM is gone.
    fn on_socket(&mut self, broken: bool) -> bool {
        self.socket.begin();
        let gone = self.receive_spawns(broken);
        self.socket.end();
        gone
    }

    fn receive_spawns(&mut self, broken: bool) -> bool {
        loop {
            match self.socket.next() {
                SocketEvent::Message(m) => self.programs.on_spawn_message(m, &mut self.managed),
                SocketEvent::WouldBlock if !broken => return false,
                SocketEvent::WouldBlock => {
                    eprintln!("sluice_helper: the fd socket broke");
                    return true;
                }
                SocketEvent::Eof => return true,
                SocketEvent::Error(e) => {
                    eprintln!("sluice_helper: reading the fd socket: {e}");
                    return true;
                }
            }
        }
    }

    fn shutdown(mut self) -> i32 {
        shutdown::run(
            &mut self.programs,
            &mut self.managed,
            &mut self.signals,
            self.shutdown_grace,
        )
    }
}
