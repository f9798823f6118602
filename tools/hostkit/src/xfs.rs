//! The scratch XFS the tools compare ferrodax with: a sparse image in /dev/shm, `mkfs.xfs -m
//! reflink=1,rmapbt=1`, loop-mounted on a fresh directory under the temporary directory.
//!
//! Owns the scratch's whole life: [`XfsScratch::set_up`] makes it (or says exactly what the machine
//! lacks: root, xfsprogs, a loop device), [`XfsScratch::remount`] unmounts and mounts it again, and
//! dropping it unmounts (retrying while busy, then detaching lazily) and deletes the image and the
//! mount point, on every path, errors and panics included. Must never leave a mount, a loop device
//! or an image behind, and never install anything.

use crate::programs::{effective_uid, find_program, run_command};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the machine lacks to make a scratch XFS, or `None` if it has everything: root (mount needs
/// it), mkfs.xfs (xfsprogs), mount and umount, /dev/shm and a loop device. Each answer names what
/// to install or do.
pub fn missing_prerequisite() -> Option<String> {
    if effective_uid() != Some(0) {
        return Some("not running as root (mount needs it)".into());
    }
    if find_program("mkfs.xfs").is_none() {
        return Some("mkfs.xfs not found (install xfsprogs: apt-get install xfsprogs)".into());
    }
    for program in ["mount", "umount"] {
        if find_program(program).is_none() {
            return Some(format!("{program} not found (install util-linux / mount)"));
        }
    }
    if !Path::new("/dev/shm").is_dir() {
        return Some("no /dev/shm".into());
    }
    if !Path::new("/dev/loop-control").exists() && !Path::new("/dev/loop0").exists() {
        return Some(
            "no loop device (/dev/loop-control; modprobe loop, or give the container loop devices)".into(),
        );
    }
    None
}

/// An XFS (reflink=1, rmapbt=1) image in /dev/shm, loop-mounted; unmounted and deleted when dropped.
pub struct XfsScratch {
    image: PathBuf,
    mountpoint: PathBuf,
    mount: PathBuf,
    umount: PathBuf,
    mounted: bool,
}

impl XfsScratch {
    /// Makes a sparse image of `size` bytes at /dev/shm/ferrodax-NAME-PID.img, formats it and
    /// mounts it on $TMPDIR/ferrodax-NAME-PID; or says why the machine cannot (see
    /// [`missing_prerequisite`]). `name` tells scratches of one process apart.
    pub fn set_up(name: &str, size: u64) -> Result<XfsScratch, String> {
        if let Some(missing) = missing_prerequisite() {
            return Err(missing);
        }
        let mkfs = find_program("mkfs.xfs").ok_or("mkfs.xfs not found (install xfsprogs)")?;
        let mount = find_program("mount").ok_or("mount not found")?;
        let umount = find_program("umount").ok_or("umount not found")?;
        let id = std::process::id();
        // From here on the guard exists, so every early return cleans up what was made.
        let mut scratch = XfsScratch {
            image: PathBuf::from(format!("/dev/shm/ferrodax-{name}-{id}.img")),
            mountpoint: std::env::temp_dir().join(format!("ferrodax-{name}-{id}")),
            mount,
            umount,
            mounted: false,
        };
        let image = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&scratch.image)
            .map_err(|e| format!("{}: {e}", scratch.image.display()))?;
        image.set_len(size).map_err(|e| format!("{}: {e}", scratch.image.display()))?;
        drop(image);
        run_command(
            &mkfs,
            &[
                "-q".as_ref(),
                "-f".as_ref(),
                "-m".as_ref(),
                "reflink=1,rmapbt=1".as_ref(),
                scratch.image.as_ref(),
            ],
        )?;
        std::fs::create_dir(&scratch.mountpoint)
            .map_err(|e| format!("{}: {e}", scratch.mountpoint.display()))?;
        scratch.mount_it()?;
        Ok(scratch)
    }

    /// The image file in /dev/shm.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Where the file system is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// A path inside the mount.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.mountpoint.join(relative)
    }

    /// Unmounts and mounts again (what a crash-free remount shows: only what reached the image).
    pub fn remount(&mut self) -> Result<(), String> {
        self.unmount_it()?;
        self.mount_it()
    }

    fn mount_it(&mut self) -> Result<(), String> {
        run_command(
            &self.mount,
            &["-o".as_ref(), "loop".as_ref(), self.image.as_ref(), self.mountpoint.as_ref()],
        )?;
        self.mounted = true;
        Ok(())
    }

    /// Unmounts, retrying while something still holds the file system busy.
    fn unmount_it(&mut self) -> Result<(), String> {
        let mut result = Ok(());
        for attempt in 0..10 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            result = run_command(&self.umount, &[self.mountpoint.as_ref()]);
            if result.is_ok() {
                self.mounted = false;
                return Ok(());
            }
        }
        result
    }
}

impl Drop for XfsScratch {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = self.unmount_it() {
                // Never leave a mount behind: detach it lazily; the loop device goes with it.
                eprintln!(
                    "scratch XFS: could not unmount {}: {e}; detaching lazily",
                    self.mountpoint.display()
                );
                let _ = run_command(&self.umount, &["-l".as_ref(), self.mountpoint.as_ref()]);
            }
        }
        let _ = std::fs::remove_dir(&self.mountpoint);
        if let Err(e) = std::fs::remove_file(&self.image) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("scratch XFS: could not delete {}: {e}", self.image.display());
            }
        }
    }
}
