//! The credentials, priority and limits of a program, resolved in the helper program
//! before the clone: user and group names looked up (`getpwnam_r` and friends are not
//! async-signal-safe, so never in the child), `allowed_users` enforced, the supplementary
//! groups of `initgroups` listed, the login variables taken from the passwd entry. The
//! child then applies plain numbers (`child.rs`).

use std::ffi::CString;

use nix::errno::Errno;
use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
use sluice_protocol::{Control, Principal, Resource, Stage};

use super::SpawnFailure;

/// The resource type `setrlimit` takes.
#[cfg(target_env = "gnu")]
pub type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub type RlimitResource = libc::c_int;

/// What the child applies, in this order, before exec: limits, priority, umask, then
/// groups, group and user (last: changing them drops the privilege the others may need).
#[derive(Debug, Default)]
pub struct Applied {
    pub rlimits: Vec<(RlimitResource, libc::rlimit)>,
    pub nice: Option<libc::c_int>,
    pub umask: Option<libc::mode_t>,
    /// `setgroups` list (with a user: its `initgroups` list).
    pub groups: Option<Vec<libc::gid_t>>,
    pub gid: Option<libc::gid_t>,
    pub uid: Option<libc::uid_t>,
    /// `NAME=value` entries that replace those of the environment (HOME, USER, LOGNAME).
    pub login_env: Vec<Vec<u8>>,
}

fn resource(r: Resource) -> RlimitResource {
    match r {
        Resource::As => libc::RLIMIT_AS,
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::Stack => libc::RLIMIT_STACK,
    }
}

fn named(reason: &'static str, what: String) -> SpawnFailure {
    SpawnFailure {
        reason: Some(reason),
        detail: what,
        ..SpawnFailure::before_fork(Errno::EINVAL, Stage::Credentials, "")
    }
}

fn lookup_failed(e: Errno, what: &str) -> SpawnFailure {
    SpawnFailure::before_fork(e, Stage::Credentials, &format!("cannot look up {what}"))
}

fn show(p: &Principal) -> String {
    match p {
        Principal::Name(n) => format!("{:?}", String::from_utf8_lossy(n)),
        Principal::Id(id) => id.to_string(),
    }
}

fn user(p: &Principal) -> Result<User, SpawnFailure> {
    let found = match p {
        Principal::Name(n) => {
            let name = String::from_utf8_lossy(n);
            User::from_name(&name).map_err(|e| lookup_failed(e, "the user"))?
        }
        Principal::Id(id) => {
            User::from_uid(Uid::from_raw(*id)).map_err(|e| lookup_failed(e, "the user"))?
        }
    };
    found.ok_or_else(|| named("NOUSER", format!("no such user: {}", show(p))))
}

fn group(p: &Principal) -> Result<libc::gid_t, SpawnFailure> {
    match p {
        Principal::Id(id) => Ok(*id),
        Principal::Name(n) => {
            let name = String::from_utf8_lossy(n);
            Group::from_name(&name)
                .map_err(|e| lookup_failed(e, "the group"))?
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| named("NOGROUP", format!("no such group: {}", show(p))))
        }
    }
}

fn allowed(list: &[Principal], u: &User) -> bool {
    list.iter().any(|a| match a {
        Principal::Name(n) => n.as_slice() == u.name.as_bytes(),
        Principal::Id(id) => *id == u.uid.as_raw(),
    })
}

/// The `PATH` of a login, as login(1) and su(1) set it (`ENV_SUPATH`/`ENV_PATH` of
/// Debian's login.defs).
const LOGIN_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";
const LOGIN_SUPATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A login variable's value for `u`, as a login shell would start with it; `None` for a
/// name that is no login variable.
fn login_value(var: &[u8], u: &User) -> Option<Vec<u8>> {
    Some(match var {
        b"HOME" => u.dir.as_os_str().as_encoded_bytes().to_vec(),
        b"USER" | b"LOGNAME" => u.name.as_bytes().to_vec(),
        b"SHELL" => match u.shell.as_os_str().as_encoded_bytes() {
            b"" => b"/bin/sh".to_vec(),
            shell => shell.to_vec(),
        },
        b"PATH" if u.uid.is_root() => LOGIN_SUPATH.to_vec(),
        b"PATH" => LOGIN_PATH.to_vec(),
        _ => return None,
    })
}

/// Resolves a spec's control keys into what the child applies.
pub fn resolve(c: &Control) -> Result<Applied, SpawnFailure> {
    let mut applied = Applied {
        rlimits: c
            .rlimits
            .iter()
            .map(|l| {
                let value = |v: Option<u64>| v.unwrap_or(libc::RLIM_INFINITY);
                let limit = libc::rlimit {
                    rlim_cur: value(l.soft),
                    rlim_max: value(l.hard),
                };
                (resource(l.resource), limit)
            })
            .collect(),
        nice: c.nice,
        umask: c.umask,
        ..Applied::default()
    };
    let gid = c.group.as_ref().map(group).transpose()?;
    match &c.user {
        Some(p) => {
            let u = user(p)?;
            if let Some(list) = &c.allowed_users {
                if !allowed(list, &u) {
                    let what = format!("user {:?} is not in allowed_users", u.name);
                    return Err(SpawnFailure {
                        detail: what,
                        ..SpawnFailure::before_fork(Errno::EPERM, Stage::Credentials, "")
                    });
                }
            }
            let name = CString::new(u.name.as_bytes())
                .map_err(|_| lookup_failed(Errno::EINVAL, "the user"))?;
            // With allowed_users, `group:` may only pick one of the user's own groups:
            // otherwise an allowed user could be paired with any group (root's included).
            if let (Some(_), Some(g)) = (&c.allowed_users, gid) {
                let own = getgrouplist(&name, u.gid)
                    .map_err(|e| lookup_failed(e, "the user's groups"))?;
                if !own.contains(&Gid::from_raw(g)) {
                    let what = format!("group {g} is not one of user {:?}'s groups", u.name);
                    return Err(SpawnFailure {
                        detail: what,
                        ..SpawnFailure::before_fork(Errno::EPERM, Stage::Credentials, "")
                    });
                }
            }
            let gid = gid.unwrap_or(u.gid.as_raw());
            let groups = getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| lookup_failed(e, "the user's groups"))?;
            applied.groups = Some(groups.into_iter().map(Gid::as_raw).collect());
            applied.gid = Some(gid);
            applied.uid = Some(u.uid.as_raw());
            for var in &c.login_env {
                if let Some(value) = login_value(var, &u) {
                    applied
                        .login_env
                        .push([var.as_slice(), b"=", &value].concat());
                }
            }
        }
        None => applied.gid = gid,
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_with_its_login_variables() {
        let c = Control {
            user: Some(Principal::Id(0)),
            login_env: ["HOME", "USER", "LOGNAME", "SHELL", "PATH", "OTHER"]
                .map(|v| v.as_bytes().to_vec())
                .to_vec(),
            ..Control::default()
        };
        let a = resolve(&c).unwrap();
        assert_eq!((a.uid, a.gid), (Some(0), Some(0)));
        assert!(a.groups.unwrap().contains(&0));
        let shell = User::from_uid(Uid::from_raw(0)).unwrap().unwrap().shell;
        let shell = format!("SHELL={}", shell.display());
        let expected = ["HOME=/root", "USER=root", "LOGNAME=root", &shell];
        let mut expected: Vec<Vec<u8>> = expected.map(|v| v.as_bytes().to_vec()).to_vec();
        expected.push([b"PATH=".as_slice(), LOGIN_SUPATH].concat());
        assert_eq!(a.login_env, expected);
    }

    #[test]
    fn unknown_and_refused_users() {
        let nobody = |allowed| Control {
            user: Some(Principal::Name(b"sluice-no-such-user".to_vec())),
            allowed_users: allowed,
            ..Control::default()
        };
        let f = resolve(&nobody(None)).err().unwrap();
        assert_eq!((f.reason, f.stage), (Some("NOUSER"), Stage::Credentials));
        let root_only = Control {
            user: Some(Principal::Id(0)),
            allowed_users: Some(vec![Principal::Name(b"daemon".to_vec())]),
            ..Control::default()
        };
        let f = resolve(&root_only).err().unwrap();
        assert_eq!((f.errno, f.stage), (Errno::EPERM, Stage::Credentials));
    }
}
