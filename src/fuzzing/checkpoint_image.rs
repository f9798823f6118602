//! Checkpoint fuzzing: hostile checkpoint payloads through the decoder, the state builder and the
//! chain framing, without a pool around them.
//!
//! Owns the identities a checkpoint must keep for any input: what decodes encodes back to the same
//! bytes; a state built from it is well formed, sizes its own next checkpoint with a bound that
//! holds, and survives its own checkpoint unchanged; any payload framed into a chain reads back
//! whole; the same bytes as a delta encode back to themselves, and the state a delta gives writes
//! a delta of its own that gives that state again; an indexed (format version 6) payload that
//! decodes encodes back to itself, and each inode its index lists decodes alone to the same inode.
//! Must never touch a pool: everything here is bytes in memory.

use super::source::ByteSource;
use crate::format::checkpoint::{self, DeltaImage, InodeImage, StateImage};
use crate::format::indexed;
use crate::format::record::InodeAttrs;
use crate::format::ROOT_INO;
use crate::fs::ownership::MetaStructure;
use crate::fs::state::State;

/// Feeds a checkpoint payload to [`StateImage::decode`] and, when it decodes, to
/// [`State::from_image`], and the same bytes to [`DeltaImage::decode`] over that state; panics when
/// one of the identities in the module documentation breaks.
///
/// Input: a byte choosing the pool size (16 to 1039 blocks) and a generation byte, then the payload.
pub fn decode_checkpoint(bytes: &[u8]) {
    let mut src = ByteSource::new(bytes);
    let total_blocks = 16 + src.u16() as u64 % 1024;
    let generation = src.u8() as u64;
    let payload = src.rest();

    // Any payload framed into two chains reads back whole (chain 0 at 2, 5, 8..., chain 1 at
    // 3, 6, 9...).
    let n = checkpoint::blocks_for(payload.len()) as u64;
    let chains: [Vec<u64>; 2] = [0, 1].map(|c| (0..n).map(|i| 2 + c + 3 * i).collect());
    let framed = checkpoint::frame(payload, generation, [&chains[0], &chains[1]]);
    let root = checkpoint::ChainRoot {
        heads: [chains[0][0], chains[1][0]],
        generation,
        payload_len: payload.len() as u64,
        payload_crc: crate::format::checksum(payload),
        total_blocks: 2 + 3 * n,
    };
    let read = checkpoint::read_chains(root, false, |b| {
        let index = ((b - 2) / 3) as usize;
        framed
            .get(index)
            .filter(|_| chains.iter().any(|c| c.get(index) == Some(&b)))
            .cloned()
            .ok_or_else(|| crate::error::Error::Corrupt(format!("block {b} is not in a chain")))
    });
    match read {
        Ok(read) => {
            assert_eq!(read.payload, payload, "framed checkpoint chains read back a different payload");
            assert_eq!(read.blocks, chains, "framed checkpoint chains read back different blocks");
            assert!(read.damaged.is_empty() && read.complete, "framed chains read back as damaged");
        }
        Err(e) => panic!("checkpoint chains framed by frame() do not read back: {e}"),
    }

    // Superblocks, an 8-block log at 2 and a one-block checkpoint at the end, like a small pool.
    let meta = [
        (0, 1, MetaStructure::Superblock(0)),
        (1, 1, MetaStructure::Superblock(1)),
        (2, 8, MetaStructure::Log),
        (total_blocks - 2, 1, MetaStructure::Checkpoint),
        (total_blocks - 1, 1, MetaStructure::CheckpointMirror),
    ];
    indexed_checkpoint(payload, total_blocks);
    let base = whole_checkpoint(payload, total_blocks, &meta);
    // The same bytes as a delta, over the state they loaded to (or a root alone).
    let base = base.unwrap_or_else(|| StateImage {
        next_ino: ROOT_INO + 1,
        inodes: vec![InodeImage {
            attrs: InodeAttrs::empty_dir(ROOT_INO, 0o755, 0, 0, 0),
            ..InodeImage::default()
        }],
        quarantine: Vec::new(),
    });
    delta_checkpoint(payload, base, total_blocks, &meta);
}

/// A whole checkpoint payload of format version 6 (run map, body, inode index): what decodes
/// encodes back to the same bytes (the runs written back from its map), and every inode the index
/// lists decodes alone, from the bytes between its entry's offset and the next one's, to what the
/// whole decode gave.
fn indexed_checkpoint(payload: &[u8], total_blocks: u64) {
    let Ok((image, map)) = indexed::decode(std::sync::Arc::new(payload.to_vec()), total_blocks) else {
        return;
    };
    let mut again = indexed::encode(&image);
    if map.has_runs() {
        assert!(indexed::set_runs(&mut again, [&map.runs[0], &map.runs[1]]), "decoded runs do not fit back");
    }
    assert_eq!(again, payload, "indexed checkpoint payload round trip");
    let index = &payload[map.index_at as usize..];
    for (k, inode) in image.inodes.iter().enumerate() {
        let (ino, at) = indexed::index_entry(index, k);
        let end =
            if k + 1 < image.inodes.len() { indexed::index_entry(index, k + 1).1 } else { map.quarantine_at };
        let alone = indexed::decode_inode(&payload[at as usize..end as usize], ino)
            .unwrap_or_else(|e| panic!("inode {ino} decodes whole but not alone: {e}"));
        assert_eq!(&alone, inode, "inode {ino} decodes alone to something else");
    }
}

/// A delta payload over `base`: what decodes encodes back to the same bytes; when the state it
/// gives loads, the delta that state writes (its changed inodes: the delta's), applied to `base`,
/// gives that state again.
fn delta_checkpoint(payload: &[u8], base: StateImage, total_blocks: u64, meta: &[(u64, u64, MetaStructure)]) {
    let Ok(delta) = DeltaImage::decode(payload) else { return };
    assert_eq!(delta.encode(), payload, "delta payload round trip");
    let changed: Vec<u64> =
        delta.inodes.iter().map(|i| i.attrs.ino).chain(delta.removed.iter().copied()).collect();
    let Ok(merged) = base.clone().with_delta(delta) else { return };
    let Ok(mut after) = State::from_image(merged, total_blocks, meta) else { return };
    after.mark_changed(changed);
    let again = base.with_delta(after.delta_image()).expect("a state's own delta applies to its base");
    let again = State::from_image(again, total_blocks, meta)
        .unwrap_or_else(|e| panic!("a state's own delta over its base does not load: {e}"));
    assert_eq!(
        again.to_image(),
        after.to_image(),
        "a state's own delta over its base loads to another state"
    );
}

/// A whole checkpoint payload: the identities of the module documentation. The state's image
/// when it loads.
fn whole_checkpoint(
    payload: &[u8],
    total_blocks: u64,
    meta: &[(u64, u64, MetaStructure)],
) -> Option<StateImage> {
    // Mount decodes sharing the payload (long extent lists stay packed in it): both ways must
    // agree, on the state and on the error.
    let plain = StateImage::decode(payload);
    let shared = StateImage::decode_sharing(std::sync::Arc::new(payload.to_vec()));
    match (&plain, &shared) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decode and decode_sharing give different states"),
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "decode and decode_sharing refuse differently")
        }
        _ => panic!("decode and decode_sharing disagree: {:?} / {:?}", plain.is_ok(), shared.is_ok()),
    }
    let image = shared.ok()?;
    assert_eq!(image.encode(), payload, "checkpoint payload round trip");
    let state = State::from_image(image, total_blocks, meta).ok()?;
    if let Err(e) = state.owners().validate() {
        panic!("a checkpoint that loaded left the ownership map malformed: {}", e.0);
    }
    // Every block exactly once: used, free, or bad and unused.
    let mut seen = vec![0u8; total_blocks as usize];
    for (start, seg) in state.owners().iter() {
        (start..start + seg.len).for_each(|b| seen[b as usize] += 1);
    }
    for (start, len) in state.free.runs() {
        (start..start + len).for_each(|b| seen[b as usize] += 1);
    }
    for (&start, &len) in &state.quarantine {
        for b in start..start + len {
            seen[b as usize] = seen[b as usize].max(1);
        }
    }
    if let Some(b) = seen.iter().position(|&n| n != 1) {
        panic!("a loaded checkpoint counts pool block {b} {} times (used, free or bad)", seen[b]);
    }
    // The state's own next checkpoint: within the bound the reserve is sized by, and loading it
    // gives the same state back.
    let next = state.to_image();
    let encoded = next.encode();
    assert!(
        state.image_size_bound() >= encoded.len() as u64,
        "checkpoint size bound {} below the encoded size {}",
        state.image_size_bound(),
        encoded.len()
    );
    let reloaded = State::from_image(next, total_blocks, meta)
        .unwrap_or_else(|e| panic!("a state's own checkpoint does not load: {e}"));
    assert_eq!(reloaded.to_image().encode(), encoded, "a state's own checkpoint loads to another state");
    Some(reloaded.to_image())
}
