//! The download folder as one open directory handle, so that no received byte can end up
//! outside it whatever a peer or a local process plants in the folder.
//!
//! The folder is opened once (`O_DIRECTORY | O_NOFOLLOW`); every later file-system call on
//! received data is relative to that handle and names exactly one path component:
//! - opens use `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` on Linux (falling back
//!   to `openat` with `O_NOFOLLOW` where the kernel lacks `openat2`), and `O_CREAT | O_EXCL`
//!   for new files, so a symlink is never followed and an existing file never reused by
//!   accident;
//! - a kept partial is trusted only after [`DownloadDir::is_ours`] checked the open file
//!   itself (`fstat`: a regular file, one link, owned by this process's user);
//! - a final name appears by `renameat2(RENAME_NOREPLACE)` (fails rather than replaces), or
//!   where that is not supported by `linkat`: never a check followed by a rename;
//! - free space comes from `fstatvfs` on the handle, and old partials are expired by name
//!   inside the handle without following links ([`DownloadDir::expire_partials`]).
//!
//! Renaming or replacing the folder's path after the server started does not redirect
//! anything: the handle keeps pointing at the folder that was opened.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::files::PART_SUFFIX;

/// Set once `openat2` turned out to be missing (an old kernel): later opens go straight to
/// `openat`.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The open download folder. Every method takes a single file name, never a path.
#[derive(Debug)]
pub struct DownloadDir {
    fd: OwnedFd,
    /// For messages and for the paths reported to the user; never used to open anything.
    path: PathBuf,
}

/// What [`DownloadDir::expire_partials`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    pub names: Vec<String>,
    pub bytes: u64,
}

impl DownloadDir {
    /// Opens the folder at `path` (which must not itself be a symlink).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// The folder's path as it was opened (for display and reported paths).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder's path now, for the paths reported to the user: the path it was opened at
    /// while that still leads to it, else (renamed since, say a received folder's root
    /// renamed during its receive) where the open folder is now, as the system tells
    /// (`/proc/self/fd`); the opened path where it cannot. Never used to open anything.
    pub fn path_now(&self) -> PathBuf {
        let here = self.identity().ok();
        let leads_here = |path: &Path| {
            rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| Some(dev_ino(&stat)) == here)
        };
        if here.is_none() || leads_here(&self.path) {
            return self.path.clone();
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let link = std::fs::read_link(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
            // The system appends " (deleted)" to a deleted folder's path; a folder merely
            // named so (renamed by a local process) is told apart by what is there.
            if let Ok(now) = link
                && now.is_absolute()
                && (!now.as_os_str().as_encoded_bytes().ends_with(b" (deleted)")
                    || leads_here(&now))
            {
                return now;
            }
        }
        self.path.clone()
    }

    /// Creates `name` exclusively for reading and writing: fails with `AlreadyExists` if
    /// anything (a file, a dangling symlink, ...) has that name.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        self.open_beneath(
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o644),
        )
    }

    /// Flushes the whole file system this folder is on (`syncfs`).
    pub fn sync_fs(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.fd)?;
        Ok(())
    }

    /// An unnamed file in the folder (`O_TMPFILE`): it never appears under any name and is
    /// gone when closed. For measuring the disk (the speed test); `Unsupported` where the
    /// file system cannot make one.
    pub fn anonymous_file(&self) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(File::from(fd))
    }

    /// Opens an existing `name` for reading and writing, never through a symlink. Whether it
    /// may be used is for [`DownloadDir::is_ours`] to say.
    pub fn open_existing(&self, name: &str) -> io::Result<File> {
        // NONBLOCK: opening a FIFO planted under this name must not hang the connection
        // (it is then refused by `is_ours`); it has no effect on regular files.
        self.open_beneath(name, OFlags::RDWR | OFlags::NONBLOCK, Mode::empty())
    }

    fn open_beneath(&self, name: &str, flags: OFlags, mode: Mode) -> io::Result<File> {
        check_component(name)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        #[cfg(target_os = "linux")]
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            use rustix::fs::ResolveFlags;
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, name, flags, mode, resolve) {
                Ok(fd) => return Ok(File::from(fd)),
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                Err(e) => return Err(e.into()),
            }
        }
        let fd = rustix::fs::openat(&self.fd, name, flags, mode)?;
        Ok(File::from(fd))
    }

    /// Creates the folder `name` (owner-only until its files are in); `AlreadyExists` when
    /// anything has that name (never followed, never reused).
    pub fn create_dir(&self, name: &str) -> io::Result<()> {
        check_component(name)?;
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the folder `name` inside this one as a handle of its own, never through a
    /// symlink (`O_DIRECTORY | O_NOFOLLOW`, beneath this handle).
    ///
    /// Only a folder this process's user owns is opened: every folder Ferry writes into it
    /// made itself (0700 until finished), so another user's folder under that name means
    /// someone swapped theirs in between `mkdirat` and this open (`PermissionDenied`).
    pub fn open_dir(&self, name: &str) -> io::Result<DownloadDir> {
        let file = self.open_beneath(name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let owner = rustix::fs::fstat(&file)?.st_uid;
        if owner != rustix::process::geteuid().as_raw() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the folder {name:?} belongs to another user; not writing into it"),
            ));
        }
        Ok(DownloadDir {
            fd: OwnedFd::from(file),
            path: self.path.join(name),
        })
    }

    /// This folder's device and inode: what tells, when a folder is opened by its name
    /// again later, that it is still the very folder made or opened before (a local process
    /// may have renamed that one away and given another folder of this user its name).
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        Ok(dev_ino(&rustix::fs::fstat(&self.fd)?))
    }

    /// The name of the folder directly in this one whose device and inode are `id`, if
    /// there is one (a folder made here and renamed since, by the user or a local process).
    /// Found by what each entry is, never through a symlink; the caller opens the name
    /// ([`DownloadDir::open_dir`]) and checks [`DownloadDir::identity`] on the handle, since
    /// the name may change meanwhile. Names that are not UTF-8 are never Ferry's.
    pub fn find_dir(&self, id: (u64, u64)) -> io::Result<Option<String>> {
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
            let ino = entry.ino() as u64;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if ino != id.1 || matches!(name, "." | "..") {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory && dev_ino(&stat) == id
            {
                return Ok(Some(name.to_owned()));
            }
        }
        Ok(None)
    }

    /// Whether this folder has no entries (a folder just made has none).
    pub fn is_empty(&self) -> io::Result<bool> {
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            if !matches!(entry.file_name().to_bytes(), b"." | b"..") {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sets this folder's modification time and permission bits (the last step of a
    /// received folder, once its entries are in).
    pub fn finish_as(&self, modified: Option<SystemTime>, mode: u32) -> io::Result<()> {
        let file = File::from(self.fd.try_clone()?);
        if let Some(modified) = modified {
            file.set_modified(modified)?;
        }
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Whether an opened file may be trusted as one of our partials: a regular file with a
    /// single link, owned by the user this process runs as. Checked on the open file, so no
    /// rename or swap after the check can change the answer for the bytes we read or write.
    pub fn is_ours(file: &File) -> bool {
        file.metadata().is_ok_and(|meta| {
            meta.file_type().is_file()
                && meta.nlink() == 1
                && meta.uid() == rustix::process::geteuid().as_raw()
        })
    }

    /// Whether anything (a file, a folder, a dangling symlink) has this name.
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        check_component(name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the file named `from` the name `to`; `AlreadyExists` when `to` is taken (never
    /// replaced, never followed). An atomic no-replace rename where the system has one (one
    /// directory change: a link and an unlink are two, and cost more over thousands of
    /// small files), else a hard link. Returns true when `from` still exists (a link: the
    /// caller removes it) and false when it was renamed.
    pub fn name_without_replacing(&self, from: &str, to: &str) -> io::Result<bool> {
        check_component(from)?;
        check_component(to)?;
        match self.rename_noreplace(from, to) {
            Ok(()) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            // No such rename on this file system (or system): a hard link instead.
            Err(_) => {}
        }
        match rustix::fs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "ios"))]
    fn rename_noreplace(&self, from: &str, to: &str) -> io::Result<()> {
        use rustix::fs::RenameFlags;
        match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "ios")))]
    fn rename_noreplace(&self, _from: &str, _to: &str) -> io::Result<()> {
        // A plain rename would replace a file planted meanwhile: a hard link instead.
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Gives the file named `from` the name `to`, replacing whatever had that name (never
    /// following it): only for Ferry's own files, such as a folder's resume state written
    /// aside and then put in place in one step, never for a received file.
    pub fn replace_own(&self, from: &str, to: &str) -> io::Result<()> {
        check_component(from)?;
        check_component(to)?;
        rustix::fs::renameat(&self.fd, from, &self.fd, to)?;
        Ok(())
    }

    /// Whether `name` is the very file `file` is open on (same device and inode).
    pub fn is_same_file(&self, name: &str, file: &File) -> io::Result<bool> {
        let ours = file.metadata()?;
        self.is_same_inode(name, (ours.dev(), ours.ino()))
    }

    /// Whether `name` (never followed) is the file with this device and inode.
    pub fn is_same_inode(&self, name: &str, (dev, ino): (u64, u64)) -> io::Result<bool> {
        check_component(name)?;
        let stat = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(dev_ino(&stat) == (dev, ino))
    }

    /// Removes the name `name` (a symlink is removed, never its target).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        check_component(name)?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?;
        Ok(())
    }

    /// Makes the folder's entries (a new name, a removed one) durable.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        Ok(())
    }

    /// Bytes an unprivileged process may still write in the folder's file system; `None`
    /// where the system cannot tell (the caller then does not refuse for lack of space).
    pub fn available_space(&self) -> Option<u64> {
        let stats = rustix::fs::fstatvfs(&self.fd).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// Removes the partials (`*.ferry.part`, regular files only) last modified more than
    /// `max_age` before `now`, except those `in_use` says a live transfer holds. Symlinks and
    /// other non-files with such names are left alone (and never followed).
    pub fn expire_partials(
        &self,
        max_age: Duration,
        now: SystemTime,
        in_use: impl Fn(&str) -> bool,
    ) -> io::Result<Expired> {
        let mut expired = Expired::default();
        for (name, size) in self.old_partials(max_age, now)? {
            if in_use(&name) {
                continue;
            }
            // Between the stat and here the name may have been replaced: unlinking a name
            // never touches what a symlink points at, so the worst case is removing a
            // fresh planted entry under a name only Ferry's partials have.
            match rustix::fs::unlinkat(&self.fd, name.as_str(), AtFlags::empty()) {
                Ok(()) => {
                    expired.names.push(name);
                    expired.bytes = expired.bytes.saturating_add(size);
                }
                Err(e) => log::warn!("cannot remove the old partial {name:?}: {e}"),
            }
        }
        expired.names.sort();
        Ok(expired)
    }

    /// The partials (`*.ferry.part`, regular files only, never followed) last modified more
    /// than `max_age` before `now`, with their sizes; nothing is removed.
    pub fn old_partials(
        &self,
        max_age: Duration,
        now: SystemTime,
    ) -> io::Result<Vec<(String, u64)>> {
        let mut old = Vec::new();
        let Some(cutoff) = now.checked_sub(max_age) else {
            return Ok(old);
        };
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue; // not a name Ferry ever writes
            };
            if !name.ends_with(PART_SUFFIX) {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                continue;
            }
            #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
            let mtime_secs = stat.st_mtime as i64;
            let modified = match u64::try_from(mtime_secs) {
                Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
                Err(_) => SystemTime::UNIX_EPOCH,
            };
            if modified < cutoff {
                #[allow(clippy::unnecessary_cast)]
                old.push((name.to_owned(), stat.st_size as u64));
            }
        }
        Ok(old)
    }
}

/// Refuses anything that is not exactly one ordinary path component (a second line of
/// defence: names are sanitised long before they get here).
/// A file's device and inode, as `u64`s.
fn dev_ino(stat: &rustix::fs::Stat) -> (u64, u64) {
    // The field types differ between platforms.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    (stat.st_dev as u64, stat.st_ino as u64)
}

fn check_component(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "dir_tests.rs"]
mod tests;
