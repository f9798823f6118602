//! Replaying the log of a format version 1 or 2 pool: its records named each inode's one name
//! inside the inode, so a record becomes current mutations against the state it applies to.
//!
//! Owns [`translate`]: a `PutInode` whose name differs from the inode's current one becomes the
//! removal of the old entry, the attributes, and the new entry; a `FreeInode` of a named inode
//! first removes its entry. Must never change the state: the journal applies what it returns,
//! with the same validation as any record.

use super::state::State;
use crate::format::legacy::LegacyMutation;
use crate::format::record::Mutation;
use crate::format::ROOT_INO;
use std::collections::HashMap;

/// The current mutations of one version 1/2 record, for the state just before it.
pub fn translate(state: &State, legacy: Vec<LegacyMutation>) -> Vec<Mutation> {
    // Names as the record changes them (an inode may be put twice in one record).
    let mut names: HashMap<u64, Option<(u64, Vec<u8>)>> = HashMap::new();
    let name_of = |names: &HashMap<u64, Option<(u64, Vec<u8>)>>, ino: u64| match names.get(&ino) {
        Some(current) => current.clone(),
        None => state.inodes.get(&ino).and_then(|i| i.names.first().map(|(dir, name)| (*dir, name.to_vec()))),
    };
    let mut out = Vec::with_capacity(legacy.len() + 2);
    for m in legacy {
        match m {
            LegacyMutation::Same(Mutation::FreeInode { ino }) => {
                if let Some((dir, name)) = name_of(&names, ino) {
                    out.push(Mutation::Unlink { dir, name, ino });
                }
                names.insert(ino, None);
                out.push(Mutation::FreeInode { ino });
            }
            LegacyMutation::Same(other) => out.push(other),
            LegacyMutation::PutInode(l) => {
                let ino = l.attrs.ino;
                let old = name_of(&names, ino);
                let new = (ino != ROOT_INO && l.attrs.nlink > 0).then_some((l.parent, l.name));
                let moved = old != new;
                if let (true, Some((dir, name))) = (moved, old) {
                    out.push(Mutation::Unlink { dir, name, ino });
                }
                out.push(Mutation::PutInode(l.attrs));
                if let (true, Some((dir, name))) = (moved, new.clone()) {
                    out.push(Mutation::Link { dir, name, ino });
                }
                names.insert(ino, new);
            }
        }
    }
    out
}
