//! The `sluice_fd` resource type: one OS fd, its close state and its owner monitor.
//!
//! Every fd is closed exactly once: by the `stop` callback after `enif_select(STOP)`, or by
//! the destructor when it was never closed. After a close was requested no operation touches
//! the fd again (they all answer `{:error, :closed}`).

use std::mem::{align_of, size_of};
use std::os::raw::{c_int, c_void};
use std::os::unix::io::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};

use rustler::sys::{
    enif_alloc_resource, enif_compare_monitors, enif_demonitor_process, enif_get_resource,
    enif_make_atom, enif_make_resource, enif_monitor_process, enif_open_resource_type_x,
    enif_release_resource, enif_select, ErlNifEnv, ErlNifEvent, ErlNifMonitor, ErlNifPid,
    ErlNifResourceDown, ErlNifResourceDtor, ErlNifResourceFlags, ErlNifResourceStop,
    ErlNifResourceType, ErlNifResourceTypeInit, ErlNifSelectFlags, ERL_NIF_SELECT_READ,
    ERL_NIF_SELECT_STOP, ERL_NIF_SELECT_WRITE,
};
use rustler::{Env, Error, NifResult, Term};

/// The resource type, set once by `load`.
static RESOURCE_TYPE: AtomicPtr<ErlNifResourceType> = AtomicPtr::new(ptr::null_mut());

/// What the resource knows about its fd. Guarded by the resource's mutex.
pub struct FdState {
    /// The fd, or -1 once it is closed.
    pub fd: RawFd,
    /// A close was requested: no more I/O, and `enif_select(STOP)` was (or is being) called.
    pub closing: bool,
    /// The last read filled its buffer: more may be waiting, so the next read asks how
    /// much first (`io::read`). False for a fresh fd and after EAGAIN, EOF or a short read.
    pub warm: bool,
    /// The owner monitor set by `monitor/1`.
    monitor: Option<ErlNifMonitor>,
}

impl Drop for FdState {
    fn drop(&mut self) {
        if self.fd >= 0 {
            close_fd(self.fd);
            self.fd = -1;
        }
    }
}

/// The resource object stored in the BEAM's resource memory.
pub struct FdResource {
    state: Mutex<FdState>,
}

impl FdResource {
    /// Locks the state. The mutex can't be poisoned by a panic in practice (release builds
    /// abort on panic, and no code panics while holding it), but recover anyway.
    pub fn lock(&self) -> MutexGuard<'_, FdState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Size to allocate so a properly aligned `FdResource` fits whatever the BEAM's alignment.
const ALLOC_SIZE: usize = size_of::<FdResource>() + align_of::<FdResource>() - 1;

/// The aligned `FdResource` inside the resource memory `obj`.
fn resource_ptr(obj: *const c_void) -> *mut FdResource {
    let raw = obj as *mut u8;
    raw.wrapping_add(raw.align_offset(align_of::<FdResource>())) as *mut FdResource
}

/// Closes `fd`, ignoring errors (EINTR included: on Linux the fd is gone either way).
fn close_fd(fd: RawFd) {
    // SAFETY: `fd` is owned by the resource being closed, which never uses it again.
    unsafe {
        libc::close(fd);
    }
}

/// The atom `undefined`, used as the select "ref" so messages are
/// `{:select, fd, :undefined, :ready_input | :ready_output}`.
fn undefined(env: *mut ErlNifEnv) -> rustler::sys::ErlNifTerm {
    // SAFETY: `env` is a valid environment of the current NIF call or callback, and the
    // name is a NUL-terminated static string.
    unsafe { enif_make_atom(env, c"undefined".as_ptr()) }
}

/// Registers the resource type. Called from `load`.
pub fn register(env: Env<'_>) -> bool {
    let init = ErlNifResourceTypeInit {
        dtor: fd_dtor as *const ErlNifResourceDtor,
        stop: fd_stop as *const ErlNifResourceStop,
        down: fd_down as *const ErlNifResourceDown,
        members: 3,
        dyncall: ptr::null(),
    };
    let mut tried = ErlNifResourceFlags::ERL_NIF_RT_CREATE;
    // SAFETY: called from the load callback with its env; name and init outlive the call
    // (the BEAM copies both), and the callbacks match the C signatures.
    let rt = unsafe {
        enif_open_resource_type_x(
            env.as_c_arg(),
            c"sluice_fd".as_ptr(),
            &init,
            ErlNifResourceFlags::ERL_NIF_RT_CREATE,
            &mut tried,
        )
    };
    if rt.is_null() {
        return false;
    }
    RESOURCE_TYPE.store(rt as *mut ErlNifResourceType, Ordering::Release);
    true
}

fn resource_type() -> *const ErlNifResourceType {
    RESOURCE_TYPE.load(Ordering::Acquire)
}

/// A borrowed fd resource from a NIF argument, valid for the NIF call.
pub struct FdRef<'a> {
    env: Env<'a>,
    obj: *const c_void,
    res: &'a FdResource,
}

impl<'a> FdRef<'a> {
    /// Decodes `term` as a `sluice_fd` resource; badarg otherwise.
    pub fn get(env: Env<'a>, term: Term<'a>) -> NifResult<FdRef<'a>> {
        let mut obj: *const c_void = ptr::null();
        // SAFETY: env and term belong to the current NIF call; `obj` is an out pointer.
        let ok = unsafe {
            enif_get_resource(env.as_c_arg(), term.as_c_arg(), resource_type(), &mut obj)
        };
        if ok == 0 || obj.is_null() {
            return Err(Error::BadArg);
        }
        // SAFETY: the resource is of our type, so `resource_ptr(obj)` is an initialised
        // `FdResource`, and the term keeps it alive for the whole NIF call (`'a`).
        let res = unsafe { &*resource_ptr(obj) };
        Ok(FdRef { env, obj, res })
    }

    pub fn lock(&self) -> MutexGuard<'a, FdState> {
        self.res.lock()
    }

    /// Arms a one-shot read (`write == false`) or write select for the calling process.
    /// Call with the state locked and not closing. Returns whether it succeeded.
    pub fn arm(&self, state: &FdState, write: bool) -> bool {
        let mode: ErlNifSelectFlags = if write {
            ERL_NIF_SELECT_WRITE
        } else {
            ERL_NIF_SELECT_READ
        };
        let pid = self.env.pid();
        let env = self.env.as_c_arg();
        // SAFETY: the fd is open (not closing, so STOP was not requested), `obj` is our
        // resource kept alive by the NIF argument, the pid is the caller's.
        let rv = unsafe {
            enif_select(
                env,
                state.fd as ErlNifEvent,
                mode,
                self.obj as *mut c_void,
                pid.as_c_arg(),
                undefined(env),
            )
        };
        rv >= 0
    }

    /// Requests the close: `:closed` for every later operation, the fd itself closed by the
    /// stop callback (now or once the BEAM no longer polls it). Idempotent.
    pub fn close(&self) {
        request_close(self.env.as_c_arg(), self.obj, self.res, true);
    }

    /// Makes the calling process the fd's owner. Returns false if it is not alive.
    pub fn monitor(&self) -> bool {
        let env = self.env.as_c_arg();
        let pid = self.env.pid();
        let mut st = self.lock();
        if st.closing {
            return true;
        }
        if let Some(old) = st.monitor.take() {
            // SAFETY: `old` was set by enif_monitor_process on this resource; demonitoring a
            // monitor that already fired is harmless (non-zero return).
            unsafe {
                enif_demonitor_process(env, self.obj, &old);
            }
        }
        let mut mon = zeroed_monitor();
        // SAFETY: valid env, our resource object, the caller's pid and an out pointer. The
        // down callback never runs inside this call (it runs when the process exits).
        let rv = unsafe { enif_monitor_process(env, self.obj, pid.as_c_arg(), &mut mon) };
        if rv != 0 {
            return false;
        }
        st.monitor = Some(mon);
        true
    }
}

/// A zeroed monitor to pass as an out parameter.
fn zeroed_monitor() -> ErlNifMonitor {
    // SAFETY: ErlNifMonitor is plain data (an array of integers); all zeros is valid.
    unsafe { std::mem::zeroed() }
}

/// Wraps `fd` in a new resource and returns its term. Takes ownership of `fd`: it is closed
/// when the resource is closed or garbage collected, and immediately on allocation failure.
pub fn make<'a>(env: Env<'a>, fd: RawFd) -> Option<Term<'a>> {
    // SAFETY: the type was registered in load; the size covers an aligned FdResource.
    let obj = unsafe { enif_alloc_resource(resource_type(), ALLOC_SIZE) };
    if obj.is_null() {
        close_fd(fd);
        return None;
    }
    let resource = FdResource {
        state: Mutex::new(FdState {
            fd,
            closing: false,
            warm: false,
            monitor: None,
        }),
    };
    // SAFETY: `obj` is fresh resource memory of ALLOC_SIZE bytes, so the aligned pointer
    // has room for an FdResource; it is initialised before the BEAM can see the resource.
    // The term keeps the resource alive after our reference is released.
    unsafe {
        ptr::write(resource_ptr(obj), resource);
        let term = enif_make_resource(env.as_c_arg(), obj);
        enif_release_resource(obj);
        Some(Term::new(env, term))
    }
}

/// The shared close path of `close/1` and the down callback.
fn request_close(env: *mut ErlNifEnv, obj: *const c_void, res: &FdResource, demonitor: bool) {
    let (fd, monitor) = {
        let mut st = res.lock();
        if st.closing {
            return;
        }
        st.closing = true;
        (st.fd, st.monitor.take())
    };
    if let (true, Some(mon)) = (demonitor, monitor) {
        // SAFETY: `mon` is a monitor of this resource; it may already have fired.
        unsafe {
            enif_demonitor_process(env, obj, &mon);
        }
    }
    if fd < 0 {
        return;
    }
    // The mutex is not held: the stop callback may run right here and lock it.
    // SAFETY: env is the current NIF's or callback's env, obj is our live resource, fd is
    // still open (only the stop callback or the destructor close it, and neither has run).
    let rv = unsafe {
        enif_select(
            env,
            fd as ErlNifEvent,
            ERL_NIF_SELECT_STOP,
            obj as *mut c_void,
            ptr::null(),
            undefined(env),
        )
    };
    if rv < 0 {
        // The BEAM refused the fd (it was never usable for select): nothing polls it.
        let mut st = res.lock();
        if st.fd == fd {
            close_fd(fd);
            st.fd = -1;
        }
    }
}

/// Destructor: drop the state, closing the fd if nothing closed it yet.
unsafe extern "C" fn fd_dtor(_env: *mut ErlNifEnv, obj: *mut c_void) {
    // SAFETY: called once, when the last reference is gone; the memory holds the
    // FdResource written by `make`, which nothing uses afterwards.
    unsafe { ptr::drop_in_place(resource_ptr(obj)) }
}

/// Stop callback: the BEAM no longer polls the fd, so close it.
unsafe extern "C" fn fd_stop(
    _env: *mut ErlNifEnv,
    obj: *mut c_void,
    _event: ErlNifEvent,
    _is_direct_call: c_int,
) {
    // SAFETY: the BEAM passes our live resource object.
    let res = unsafe { &*resource_ptr(obj) };
    let mut st = res.lock();
    if st.fd >= 0 {
        close_fd(st.fd);
        st.fd = -1;
    }
}

/// Down callback: the owner died, close the fd like `close/1`.
unsafe extern "C" fn fd_down(
    env: *mut ErlNifEnv,
    obj: *mut c_void,
    _pid: *const ErlNifPid,
    mon: *const ErlNifMonitor,
) {
    // SAFETY: the BEAM passes our live resource object and a valid monitor pointer.
    let res = unsafe { &*resource_ptr(obj) };
    {
        let mut st = res.lock();
        match st.monitor {
            // SAFETY: both point to valid monitors.
            Some(ref current) if unsafe { enif_compare_monitors(current, mon) } == 0 => {
                st.monitor = None;
            }
            // A monitor replaced by a later `monitor/1`: not the owner any more.
            _ => return,
        }
    }
    request_close(env, obj, res, false);
}
