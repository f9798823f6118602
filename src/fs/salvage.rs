//! Salvage: a consistent state from whatever a damaged pool still holds.
//!
//! Owns the rules that turn a possibly inconsistent image (a checkpoint cut short, a log replayed
//! with records or changes missing) into one that [`State::from_image`] accepts and `check` calls
//! clean: bad names are replaced, nameless or homeless inodes go to `/lost+found`, directory cycles
//! are cut, link counts are recomputed, extents that leave the pool, overlap metadata or each other
//! are dropped. Every change is reported in words a user can act on. Must never read or write the
//! pool: the journal reads, [`crate::fs::FileSystem::repair`] writes.

use super::ownership::MetaStructure;
use super::state::State;
use crate::format::checkpoint::{InodeImage, StateImage};
use crate::format::record::{InodeAttrs, InodeKind, Mutation};
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE, MAX_NAME_LEN, ROOT_INO};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The directory under the root where inodes whose place in the tree was lost are put.
pub const LOST_AND_FOUND: &[u8] = b"lost+found";

/// Whether `name` may name an entry of a directory (Linux's rules: not empty, not `.` or `..`, no
/// `/`, no NUL, at most 255 bytes).
pub fn valid_entry_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && name.len() <= MAX_NAME_LEN
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// Builds a consistent state from `image`, changing what must change and saying so in `lost`.
/// Never fails: in the worst case the state is an empty root directory.
pub fn state_from_damaged_image(
    image: StateImage,
    total_blocks: u64,
    layout: &[(u64, u64, MetaStructure)],
    lost: &mut Vec<String>,
) -> State {
    let mut image = sanitize(image, total_blocks, layout, lost);
    // Whatever the rules above did not foresee: drop the extents of the inode the state refuses,
    // then the inode, until it is accepted.
    for _ in 0..image.inodes.len() * 2 + 2 {
        match State::from_image(&image, total_blocks, layout) {
            Ok(state) => return state,
            Err(e) => {
                let text = e.to_string();
                let names = |ino: u64| {
                    [format!("inode {ino}:"), format!("inode {ino} "), format!("inode number {ino} ")]
                        .iter()
                        .any(|pattern| text.contains(pattern.as_str()))
                };
                let culprit = image.inodes.iter().position(|i| i.attrs.ino != ROOT_INO && names(i.attrs.ino));
                match culprit {
                    Some(at) if !image.inodes[at].extents.is_empty() => {
                        lost.push(format!(
                            "inode {}: its data is dropped ({text})",
                            image.inodes[at].attrs.ino
                        ));
                        image.inodes[at].extents.clear();
                        image.inodes[at].attrs.size = 0;
                    }
                    Some(at) => {
                        lost.push(format!("inode {} is dropped ({text})", image.inodes[at].attrs.ino));
                        image.inodes.remove(at);
                        image = sanitize(image, total_blocks, layout, lost);
                    }
                    None => {
                        lost.push(format!("the tree could not be rebuilt ({text}): only the root is left"));
                        image.inodes.retain(|i| i.attrs.ino == ROOT_INO);
                        for i in &mut image.inodes {
                            i.extents.clear();
                        }
                        image.quarantine.clear();
                        image = sanitize(image, total_blocks, layout, lost);
                    }
                }
            }
        }
    }
    let root = StateImage {
        next_ino: ROOT_INO + 1,
        inodes: vec![fresh_dir(ROOT_INO, ROOT_INO, b"")],
        quarantine: vec![],
    };
    State::from_image(&root, total_blocks, layout).expect("an empty root directory is always a valid state")
}

/// Salvage replay: when `m` failed because it puts an inode into a directory that does not exist
/// (the record that made the directory was lost), the mutation that recreates that directory, as
/// a stand-in under the root named `ino-N` (a later record that touches it, or the final rules,
/// put it right). `None` for any other failure.
pub fn recreate_missing_parent(state: &State, m: &Mutation) -> Option<Mutation> {
    let Mutation::PutInode(attrs) = m else { return None };
    if attrs.ino == ROOT_INO || attrs.nlink == 0 || state.inodes.contains_key(&attrs.parent) {
        return None;
    }
    let parent = attrs.parent;
    if parent == 0 || parent == attrs.ino {
        return None;
    }
    Some(Mutation::PutInode(fresh_dir(parent, ROOT_INO, format!("ino-{parent}").as_bytes()).attrs))
}

fn fresh_dir(ino: u64, parent: u64, name: &[u8]) -> InodeImage {
    InodeImage {
        attrs: InodeAttrs::empty_dir(ino, parent, name, super::journal::now_ns()),
        extents: Vec::new(),
    }
}

/// Applies the rules of the module documentation to `image`.
fn sanitize(
    image: StateImage,
    total_blocks: u64,
    layout: &[(u64, u64, MetaStructure)],
    lost: &mut Vec<String>,
) -> StateImage {
    let mut meta: Vec<(u64, u64)> = layout.iter().map(|&(s, l, _)| (s, l)).collect();
    meta.sort_unstable();
    let touches_meta = |phys: u64, len: u64| {
        let end = phys + len;
        let i = meta.partition_point(|&(s, l)| s + l <= phys);
        meta.get(i).is_some_and(|&(s, _)| s < end)
    };
    let quarantine: Vec<(u64, u64)> = image
        .quarantine
        .into_iter()
        .filter(|&(s, l)| l > 0 && s >= 2 && s.checked_add(l).is_some_and(|e| e <= total_blocks))
        .collect();

    // One inode per number; the root a directory.
    let mut inodes: BTreeMap<u64, InodeImage> = BTreeMap::new();
    for inode in image.inodes {
        let ino = inode.attrs.ino;
        if ino == 0 || ino == u64::MAX {
            lost.push(format!("an inode numbered {ino} is dropped"));
            continue;
        }
        match inodes.entry(ino) {
            std::collections::btree_map::Entry::Occupied(_) => {
                lost.push(format!("inode {ino} appears twice: the second one is dropped"))
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(inode);
            }
        }
    }
    if !inodes.get(&ROOT_INO).is_some_and(|r| r.attrs.kind == InodeKind::Dir) {
        lost.push("the root directory was lost: a new, empty one is made".into());
        if let Some(old) = inodes.remove(&ROOT_INO) {
            lost.push(format!("the old root (a {:?}) is dropped", old.attrs.kind));
        }
        inodes.insert(ROOT_INO, fresh_dir(ROOT_INO, ROOT_INO, b""));
    }
    let mut next_ino = image.next_ino.max(inodes.keys().next_back().copied().unwrap_or(ROOT_INO) + 1);

    // Attributes and extents, inode by inode.
    for (&ino, inode) in inodes.iter_mut() {
        let a = &mut inode.attrs;
        if a.kind == InodeKind::Dir {
            if !inode.extents.is_empty() {
                lost.push(format!("directory {ino}: it mapped data blocks; they are dropped"));
                inode.extents.clear();
            }
            a.size = 0;
            continue;
        }
        if a.size > MAX_FILE_SIZE {
            lost.push(format!("inode {ino}: size {} is past the largest file size; set to 0", a.size));
            a.size = 0;
        }
        let eof_blocks = a.size.div_ceil(BLOCK_SIZE);
        let mut kept: Vec<(u64, u64, u64)> = Vec::with_capacity(inode.extents.len());
        let mut extents = std::mem::take(&mut inode.extents);
        extents.sort_unstable();
        let mut dropped = 0u64;
        for (fb, phys, len) in extents {
            let inside = len > 0
                && fb.checked_add(len).is_some()
                && phys >= 2
                && phys.checked_add(len).is_some_and(|e| e <= total_blocks);
            let overlaps_previous = kept.last().is_some_and(|&(pfb, _, plen)| pfb + plen > fb);
            if !inside || overlaps_previous || touches_meta(phys, len) {
                dropped += len.min(1 << 40);
                continue;
            }
            if fb >= eof_blocks {
                continue; // past EOF: nothing a reader sees
            }
            let len = len.min(eof_blocks - fb);
            // Keep the map canonical: merge with the previous extent when both are contiguous.
            match kept.last_mut() {
                Some(last) if last.0 + last.2 == fb && last.1 + last.2 == phys => last.2 += len,
                _ => kept.push((fb, phys, len)),
            }
        }
        if dropped > 0 {
            lost.push(format!(
                "inode {ino}: {dropped} block(s) of data pointed outside the pool, into metadata, or \
                 over other blocks of the file; they read as zeros now"
            ));
        }
        inode.extents = kept;
    }

    // Places in the tree: a valid name in an existing directory, reachable from the root.
    let dirs: HashSet<u64> =
        inodes.iter().filter(|(_, i)| i.attrs.kind == InodeKind::Dir).map(|(&ino, _)| ino).collect();
    let mut homeless: HashSet<u64> = HashSet::new();
    for (&ino, inode) in inodes.iter_mut() {
        if ino == ROOT_INO {
            inode.attrs.parent = ROOT_INO;
            inode.attrs.name.clear();
            continue;
        }
        let a = &mut inode.attrs;
        let orphan = a.kind == InodeKind::File && a.nlink == 0;
        if !valid_entry_name(&a.name) {
            lost.push(format!(
                "inode {ino}: the name {:?} is not a valid name; renamed ino-{ino}",
                String::from_utf8_lossy(&a.name)
            ));
            a.name = format!("ino-{ino}").into_bytes();
        }
        if orphan {
            continue; // unlinked while open: released by the next read-write mount
        }
        if a.parent == ino || !dirs.contains(&a.parent) {
            homeless.insert(ino);
        }
    }
    // Directories that do not reach the root (a cycle, or a parent that is itself homeless).
    let parent_of: HashMap<u64, u64> = inodes.iter().map(|(&i, n)| (i, n.attrs.parent)).collect();
    for &dir in &dirs {
        if dir == ROOT_INO || homeless.contains(&dir) {
            continue;
        }
        let mut at = dir;
        let mut steps = 0;
        while at != ROOT_INO && steps <= dirs.len() {
            at = parent_of[&at];
            steps += 1;
            if homeless.contains(&at) {
                break;
            }
        }
        if at != ROOT_INO && !homeless.contains(&at) {
            homeless.insert(dir); // in a cycle: cut it here
        }
    }
    if !homeless.is_empty() {
        let existing = inodes
            .values()
            .find(|i| {
                i.attrs.parent == ROOT_INO && i.attrs.name == LOST_AND_FOUND && i.attrs.kind == InodeKind::Dir
            })
            .map(|i| i.attrs.ino);
        let lost_found = existing.unwrap_or_else(|| {
            let ino = next_ino;
            next_ino += 1;
            inodes.insert(ino, fresh_dir(ino, ROOT_INO, LOST_AND_FOUND));
            ino
        });
        let mut homeless: Vec<u64> = homeless.into_iter().collect();
        homeless.sort_unstable();
        for ino in homeless {
            let a = &mut inodes.get_mut(&ino).expect("homeless inodes exist").attrs;
            lost.push(format!(
                "inode {ino} ({:?}): its directory {} is gone; moved to /lost+found/ino-{ino}",
                String::from_utf8_lossy(&a.name),
                a.parent
            ));
            a.parent = lost_found;
            a.name = format!("ino-{ino}").into_bytes();
        }
    }
    // One name per entry: a second inode with a name already taken gets another one.
    let mut taken: HashSet<(u64, Vec<u8>)> = HashSet::new();
    for (&ino, inode) in inodes.iter_mut() {
        let a = &mut inode.attrs;
        if ino == ROOT_INO || (a.kind == InodeKind::File && a.nlink == 0) {
            continue;
        }
        if !taken.insert((a.parent, a.name.clone())) {
            let renamed = format!("{}.ino-{ino}", String::from_utf8_lossy(&a.name)).into_bytes();
            lost.push(format!(
                "inode {ino}: directory {} already has an entry {:?}; renamed {:?}",
                a.parent,
                String::from_utf8_lossy(&a.name),
                String::from_utf8_lossy(&renamed)
            ));
            a.name = renamed;
            taken.insert((a.parent, a.name.clone()));
        }
    }
    // Link counts follow the tree.
    let mut subdirs: HashMap<u64, u32> = HashMap::new();
    for inode in inodes.values() {
        if inode.attrs.kind == InodeKind::Dir && inode.attrs.ino != ROOT_INO {
            *subdirs.entry(inode.attrs.parent).or_default() += 1;
        }
    }
    for (&ino, inode) in inodes.iter_mut() {
        let a = &mut inode.attrs;
        let want = match a.kind {
            InodeKind::Dir => 2 + subdirs.get(&ino).copied().unwrap_or(0),
            InodeKind::File if a.nlink == 0 => 0,
            InodeKind::File => 1,
        };
        if a.nlink != want {
            lost.push(format!("inode {ino}: link count {} corrected to {want}", a.nlink));
            a.nlink = want;
        }
    }
    StateImage { next_ino, inodes: inodes.into_values().collect(), quarantine }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, parent: u64, name: &[u8], nlink: u32) -> InodeImage {
        let mut attrs = InodeAttrs::empty_dir(ino, parent, name, 0);
        attrs.kind = InodeKind::File;
        attrs.nlink = nlink;
        attrs.mode = 0o644;
        InodeImage { attrs, extents: Vec::new() }
    }

    fn layout() -> Vec<(u64, u64, MetaStructure)> {
        vec![
            (0, 1, MetaStructure::Superblock(0)),
            (1, 1, MetaStructure::Superblock(1)),
            (2, 4, MetaStructure::Log),
        ]
    }

    #[test]
    fn hostile_images_keep_every_good_inode_in_place() {
        // A quarantine over block 0, an inode numbered u64::MAX, an orphan with a bad name and a
        // file in a missing directory: the rules fix or drop exactly those, and the good file
        // keeps its place and name.
        let image = StateImage {
            next_ino: 30,
            inodes: vec![
                InodeImage { attrs: InodeAttrs::empty_dir(ROOT_INO, ROOT_INO, b"", 0), extents: vec![] },
                file(2, ROOT_INO, b"good", 1),
                file(23, ROOT_INO, b"bad/name", 0),
                file(u64::MAX, ROOT_INO, b"max", 1),
                file(24, 99, b"homeless", 1),
            ],
            quarantine: vec![(0, 3), (40, 1)],
        };
        let mut lost = Vec::new();
        let state = state_from_damaged_image(image, 64, &layout(), &mut lost);
        let good = &state.inodes[&2];
        assert_eq!((good.attrs.parent, good.attrs.name.as_slice()), (ROOT_INO, &b"good"[..]), "{lost:#?}");
        assert!(!state.inodes.contains_key(&u64::MAX));
        assert_eq!(state.inodes[&23].attrs.name, b"ino-23");
        let lost_found = state.inodes[&ROOT_INO].children[LOST_AND_FOUND];
        assert_eq!(state.inodes[&24].attrs.parent, lost_found);
        assert_eq!(state.quarantine.iter().map(|(&s, &l)| (s, l)).collect::<Vec<_>>(), vec![(40, 1)]);
    }
}
