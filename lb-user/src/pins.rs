//! The bpffs directory where an instance pins what outlives one daemon process.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// `statfs(2)` magic of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xCAFE_4A11;
/// Where systemd (and every other distribution tool) mounts bpffs.
const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{} is not on a BPF filesystem; mount one (`mount -t bpf bpf {DEFAULT_BPFFS}`) or set daemon.pin_path below one", path.display())]
    NotBpffs { path: PathBuf },
    #[error("cannot mount bpffs on {DEFAULT_BPFFS}: {source}")]
    Mount { source: io::Error },
    #[error("cannot create pin directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("instance `{instance}` is in use: a running tether holds {}; stop it first, or start this one with another --instance", dir.display())]
    InUse { instance: String, dir: PathBuf },
    #[error("cannot lock {}: {source}", dir.display())]
    Lock { dir: PathBuf, source: io::Error },
}

/// An instance directory this process holds: an exclusive `flock` on the
/// directory, which the kernel drops when the process ends however it
/// ends, so a daemon killed with SIGKILL leaves its pins adoptable.
pub struct Instance {
    pub dir: PathBuf,
    /// Pins from a daemon that ended without cleaning up: to be adopted.
    pub adopting: bool,
    _lock: std::fs::File,
}

/// `{pin_path}/{instance}`: one directory per daemon instance.
pub fn instance_dir(pin_path: &Path, instance: &str) -> PathBuf {
    pin_path.join(instance)
}

/// Makes sure `pin_path` lies on bpffs (mounting it on /sys/fs/bpf when that is
/// where it should be and nothing is mounted yet), creates the instance dir
/// and locks it; refused while another daemon holds it.
pub fn prepare(pin_path: &Path, instance: &str) -> Result<Instance, PinError> {
    let existing = nearest_existing(pin_path);
    if !is_bpffs(&existing) {
        if pin_path.starts_with(DEFAULT_BPFFS)
            && Path::new(DEFAULT_BPFFS).is_dir()
            && !is_bpffs(Path::new(DEFAULT_BPFFS))
        {
            mount_bpffs()?;
            tracing::info!(path = DEFAULT_BPFFS, "mounted bpffs");
        } else {
            return Err(PinError::NotBpffs { path: pin_path.to_owned() });
        }
    }
    let dir = instance_dir(pin_path, instance);
    std::fs::create_dir_all(&dir).map_err(|source| PinError::CreateDir { path: dir.clone(), source })?;
    let lock = std::fs::File::open(&dir).map_err(|source| PinError::Lock { dir: dir.clone(), source })?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let source = io::Error::last_os_error();
        return Err(if source.kind() == io::ErrorKind::WouldBlock {
            PinError::InUse { instance: instance.to_owned(), dir }
        } else {
            PinError::Lock { dir, source }
        });
    }
    let adopting = std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    Ok(Instance { dir, adopting, _lock: lock })
}

/// The pin of the link that attaches `program` (`xdp`, `tc`) to `interface`.
pub fn link_pin(dir: &Path, program: &str, interface: &str) -> PathBuf {
    dir.join(format!("link_{program}_{interface}"))
}

/// Removes the instance directory and what is pinned in it.
pub fn remove(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove pin directory");
    }
}

fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/")).to_owned()
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs writes only into the zeroed struct we pass; c_path is a valid
    // NUL-terminated string for the duration of the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs() -> Result<(), PinError> {
    let target = CString::new(DEFAULT_BPFFS).expect("no NUL in a constant");
    let fstype = CString::new("bpf").expect("no NUL in a constant");
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(PinError::Mount { source: io::Error::last_os_error() });
    }
    Ok(())
}
