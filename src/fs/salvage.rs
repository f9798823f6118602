//! Salvage: a consistent state from whatever a damaged pool still holds.
//!
//! Owns the rules that turn a possibly inconsistent image (a checkpoint cut short, a log replayed
//! with records or changes missing) into one that [`State::from_image`] accepts and `check` calls
//! clean: entries with bad names or naming lost inodes are dropped, a directory keeps one name,
//! directories the walk from the root does not reach (a cycle, a lost parent) and files that lost
//! every name go to `/lost+found`, link counts are recomputed, extents that leave the pool, overlap
//! metadata or each other are dropped, as are bad extended attributes and symlinks without a target. Every change is reported in words a user can act on. Must never read or write the
//! pool: the journal reads, [`crate::fs::FileSystem::repair`] writes.

use super::ownership::MetaStructure;
use super::state::State;
use super::validate::{kind_name, xattr_problem};
use crate::format::checkpoint::{ExtentList, InodeImage, StateImage};
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
        match State::from_image(image.clone(), total_blocks, layout) {
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
                        image.inodes[at].extents = ExtentList::default();
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
                            i.extents = ExtentList::default();
                        }
                        image.quarantine.clear();
                        image = sanitize(image, total_blocks, layout, lost);
                    }
                }
            }
        }
    }
    let root = StateImage { next_ino: ROOT_INO + 1, inodes: vec![fresh_dir(ROOT_INO)], quarantine: vec![] };
    State::from_image(root, total_blocks, layout).expect("an empty root directory is always a valid state")
}

/// Salvage replay: when `m` failed because it names an entry of a directory that does not exist
/// (the record that made the directory was lost), the mutations that recreate that directory, as
/// a stand-in under the root named `ino-N` (a later record that touches it, or the final rules,
/// put it right). `None` for any other failure.
pub fn recreate_missing_parent(state: &State, m: &Mutation) -> Option<Vec<Mutation>> {
    let Mutation::Link { dir, .. } = m else { return None };
    let dir = *dir;
    let name = format!("ino-{dir}").into_bytes();
    if dir == 0 || dir == u64::MAX || state.inodes.contains_key(&dir) {
        return None;
    }
    if state.inodes.get(&ROOT_INO)?.entry(&name).is_some() {
        return None;
    }
    Some(vec![Mutation::PutInode(fresh_dir(dir).attrs), Mutation::Link { dir: ROOT_INO, name, ino: dir }])
}

fn fresh_dir(ino: u64) -> InodeImage {
    InodeImage {
        attrs: InodeAttrs::empty_dir(ino, 0o755, 0, 0, super::journal::now_ns()),
        ..InodeImage::default()
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
            lost.push(format!("the old root (a {}) is dropped", kind_name(old.attrs.kind)));
        }
        inodes.insert(ROOT_INO, fresh_dir(ROOT_INO));
    }
    let mut next_ino = image.next_ino.max(inodes.keys().next_back().copied().unwrap_or(ROOT_INO) + 1);

    // Attributes, extents, extended attributes and targets, inode by inode.
    let mut unusable_links = Vec::new();
    for (&ino, inode) in inodes.iter_mut() {
        let a = &mut inode.attrs;
        a.mode &= 0o7777;
        inode.xattrs.retain(|(name, value)| {
            let problem = xattr_problem(name, value);
            if let Some(p) = &problem {
                lost.push(format!("inode {ino}: {p}: dropped"));
            }
            problem.is_none()
        });
        if a.kind != InodeKind::Dir && !inode.entries.is_empty() {
            lost.push(format!("inode {ino}: a {} held directory entries; dropped", kind_name(a.kind)));
            inode.entries.clear();
        }
        if a.kind != InodeKind::File && !inode.extents.is_empty() {
            lost.push(format!("{} {ino}: it mapped data blocks; they are dropped", kind_name(a.kind)));
            inode.extents = ExtentList::default();
        }
        if a.kind != InodeKind::Symlink {
            inode.target.clear();
        }
        match a.kind {
            InodeKind::Dir => {
                a.size = 0;
                continue;
            }
            InodeKind::Symlink => {
                if inode.target.is_empty() || inode.target.contains(&0) {
                    lost.push(format!("symlink {ino}: its target is lost; the symlink is dropped"));
                    unusable_links.push(ino);
                }
                a.size = inode.target.len() as u64;
                continue;
            }
            InodeKind::File => {}
        }
        if a.size > MAX_FILE_SIZE {
            lost.push(format!("inode {ino}: size {} is past the largest file size; set to 0", a.size));
            a.size = 0;
        }
        let eof_blocks = a.size.div_ceil(BLOCK_SIZE);
        let mut kept: Vec<(u64, u64, u64)> = Vec::with_capacity(inode.extents.len());
        let mut extents = std::mem::take(&mut inode.extents).into_vec();
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
        inode.extents = kept.into();
    }
    for ino in unusable_links {
        inodes.remove(&ino);
    }

    // Places in the tree: entries with a good name naming an existing inode, walked from the
    // root; a directory keeps the first name the walk meets.
    let mut entries: BTreeMap<u64, Vec<(Vec<u8>, u64)>> = BTreeMap::new();
    for (&dir, inode) in inodes.iter_mut() {
        for (name, child) in std::mem::take(&mut inode.entries) {
            entries.entry(dir).or_default().push((name, child));
        }
    }
    let mut kept: BTreeMap<u64, Vec<(Vec<u8>, u64)>> = BTreeMap::new();
    let mut placed: HashSet<u64> = HashSet::from([ROOT_INO]);
    let mut names_of: HashMap<u64, u32> = HashMap::new();
    let walk = |start: u64,
                inodes: &BTreeMap<u64, InodeImage>,
                entries: &mut BTreeMap<u64, Vec<(Vec<u8>, u64)>>,
                kept: &mut BTreeMap<u64, Vec<(Vec<u8>, u64)>>,
                placed: &mut HashSet<u64>,
                names_of: &mut HashMap<u64, u32>,
                lost: &mut Vec<String>| {
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            for (name, child) in entries.remove(&dir).unwrap_or_default() {
                let shown = String::from_utf8_lossy(&name).into_owned();
                let Some(target) = inodes.get(&child).filter(|_| child != ROOT_INO) else {
                    lost.push(format!(
                        "directory {dir}: the entry {shown:?} named a lost inode {child}; dropped"
                    ));
                    continue;
                };
                if !valid_entry_name(&name) {
                    lost.push(format!("directory {dir}: the entry {shown:?} is not a valid name; dropped"));
                    continue;
                }
                if target.attrs.kind == InodeKind::Dir {
                    if !placed.insert(child) {
                        lost.push(format!(
                            "directory {child}: a second name {shown:?} in directory {dir} is dropped"
                        ));
                        continue;
                    }
                    stack.push(child);
                }
                *names_of.entry(child).or_default() += 1;
                kept.entry(dir).or_default().push((name, child));
            }
        }
    };
    walk(ROOT_INO, &inodes, &mut entries, &mut kept, &mut placed, &mut names_of, lost);
    // What the walk did not reach goes to /lost+found: directories (a cycle, or a lost parent)
    // with what they hold, and files and symlinks that had a name.
    let homeless: Vec<u64> = inodes
        .values()
        .filter(|i| match i.attrs.kind {
            InodeKind::Dir => !placed.contains(&i.attrs.ino),
            _ => i.attrs.nlink > 0 && !names_of.contains_key(&i.attrs.ino),
        })
        .map(|i| i.attrs.ino)
        .collect();
    if !homeless.is_empty() {
        let existing = kept
            .get(&ROOT_INO)
            .and_then(|e| e.iter().find(|(n, _)| n == LOST_AND_FOUND))
            .map(|&(_, ino)| ino)
            .filter(|ino| inodes[ino].attrs.kind == InodeKind::Dir);
        let lost_found = existing.unwrap_or_else(|| {
            let ino = next_ino;
            next_ino += 1;
            inodes.insert(ino, fresh_dir(ino));
            placed.insert(ino);
            let root_entries = kept.entry(ROOT_INO).or_default();
            let mut name = LOST_AND_FOUND.to_vec();
            if root_entries.iter().any(|(n, _)| *n == name) {
                name = format!("lost+found.ino-{ino}").into_bytes();
            }
            root_entries.push((name, ino));
            names_of.insert(ino, 1);
            ino
        });
        for ino in homeless {
            let reached = match inodes[&ino].attrs.kind {
                InodeKind::Dir => placed.contains(&ino),
                _ => names_of.contains_key(&ino),
            };
            if reached {
                continue; // reached from a homeless directory placed before it
            }
            let taken = kept.entry(lost_found).or_default();
            let mut name = format!("ino-{ino}").into_bytes();
            if taken.iter().any(|(n, _)| *n == name) {
                name = format!("ino-{ino}.{next_ino}").into_bytes();
            }
            lost.push(format!(
                "inode {ino} ({}): no directory of the tree names it any more; moved to /lost+found/{}",
                kind_name(inodes[&ino].attrs.kind),
                String::from_utf8_lossy(&name)
            ));
            taken.push((name, ino));
            *names_of.entry(ino).or_default() += 1;
            if inodes[&ino].attrs.kind == InodeKind::Dir {
                placed.insert(ino);
                walk(ino, &inodes, &mut entries, &mut kept, &mut placed, &mut names_of, lost);
            }
        }
    }
    for (dir, list) in entries {
        if !list.is_empty() {
            lost.push(format!(
                "directory {dir}: {} entries of a directory outside the tree are dropped",
                list.len()
            ));
        }
    }
    // Link counts follow the tree.
    let mut subdirs: HashMap<u64, u32> = HashMap::new();
    for (&dir, list) in &kept {
        for (_, child) in list {
            if inodes[child].attrs.kind == InodeKind::Dir {
                *subdirs.entry(dir).or_default() += 1;
            }
        }
    }
    for (&ino, inode) in inodes.iter_mut() {
        let a = &mut inode.attrs;
        let want = match a.kind {
            InodeKind::Dir => 2 + subdirs.get(&ino).copied().unwrap_or(0),
            _ => names_of.get(&ino).copied().unwrap_or(0),
        };
        if a.nlink != want {
            lost.push(format!("inode {ino}: link count {} corrected to {want}", a.nlink));
            a.nlink = want;
        }
        let mut list = kept.remove(&ino).unwrap_or_default();
        list.sort_unstable();
        inode.entries = list;
    }
    StateImage { next_ino, inodes: inodes.into_values().collect(), quarantine }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::state::Name;

    fn file(ino: u64, nlink: u32) -> InodeImage {
        let mut attrs = InodeAttrs::empty_dir(ino, 0o644, 0, 0, 0);
        attrs.kind = InodeKind::File;
        attrs.nlink = nlink;
        InodeImage { attrs, ..InodeImage::default() }
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
        // A quarantine over block 0, an inode numbered u64::MAX, an entry with a bad name, an entry
        // naming a lost inode and a file no entry names: the rules fix or drop exactly those, and
        // the good file keeps both of its names.
        let mut root = fresh_dir(ROOT_INO);
        root.entries = vec![
            (b"bad/name".to_vec(), 23),
            (b"ghost".to_vec(), 77),
            (b"good".to_vec(), 2),
            (b"good2".to_vec(), 2),
            (b"max".to_vec(), u64::MAX),
        ];
        let image = StateImage {
            next_ino: 30,
            inodes: vec![root, file(2, 2), file(23, 1), file(u64::MAX, 1), file(24, 1)],
            quarantine: vec![(0, 3), (40, 1)],
        };
        let mut lost = Vec::new();
        let state = state_from_damaged_image(image, 64, &layout(), &mut lost);
        let root = &state.inodes[&ROOT_INO];
        assert_eq!(root.children().get(&b"good"[..]), Some(&2), "{lost:#?}");
        assert_eq!(root.children().get(&b"good2"[..]), Some(&2));
        assert_eq!(state.inodes[&2].attrs.nlink, 2);
        assert!(!state.inodes.contains_key(&u64::MAX));
        assert!(!root.children().contains_key(&b"ghost"[..]));
        let lost_found = root.children()[LOST_AND_FOUND];
        assert_eq!(state.inodes[&23].names.to_vec(), vec![(lost_found, Name::from(&b"ino-23"[..]))]);
        assert_eq!(state.inodes[&24].names.to_vec(), vec![(lost_found, Name::from(&b"ino-24"[..]))]);
        assert_eq!(state.quarantine.iter().map(|(&s, &l)| (s, l)).collect::<Vec<_>>(), vec![(40, 1)]);
    }

    #[test]
    fn a_directory_cycle_is_cut_into_lost_and_found_with_its_contents() {
        // Directories 3 and 4 name each other, and 4 holds file 5: no walk from the root reaches
        // them; both end up under /lost+found, the file still inside 4.
        let mut d3 = fresh_dir(3);
        d3.entries = vec![(b"four".to_vec(), 4)];
        let mut d4 = fresh_dir(4);
        d4.entries = vec![(b"file".to_vec(), 5), (b"three".to_vec(), 3)];
        let image = StateImage {
            next_ino: 10,
            inodes: vec![fresh_dir(ROOT_INO), d3, d4, file(5, 1)],
            quarantine: vec![],
        };
        let mut lost = Vec::new();
        let state = state_from_damaged_image(image, 64, &layout(), &mut lost);
        let lost_found = state.inodes[&ROOT_INO].children()[LOST_AND_FOUND];
        assert_eq!(
            state.inodes[&3].names.to_vec(),
            vec![(lost_found, Name::from(&b"ino-3"[..]))],
            "{lost:#?}"
        );
        assert_eq!(state.inodes[&4].names.to_vec(), vec![(3, Name::from(&b"four"[..]))]);
        assert_eq!(state.inodes[&5].names.to_vec(), vec![(4, Name::from(&b"file"[..]))]);
        assert!(!state.inodes[&4].children().contains_key(&b"three"[..]));
    }
}
