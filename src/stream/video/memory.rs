//! One object's memory bank: what a later step's memory attention reads,
//! and nothing more (docs/video-tracker.md, "Memory bound plan").
//!
//! transformers keeps every frame's output of every object for ever; what
//! its streaming step reads is at most `max_cond_frame_num` conditioning
//! memories (the most recent), the memories of the last `num_maskmem - 1`
//! frames, the pointers of the last `max_object_pointers - 1` frames and the
//! pointers of every conditioning frame. Here the recent memories and
//! pointers are rings of exactly those sizes (identical to transformers), and
//! the conditioning frames are capped: the one dropped is the oldest, which
//! transformers' `_select_closest_cond_frames` would never select again, so
//! memories stay identical; only its pointer, which transformers still
//! reads, is gone (the stated deviation).
//!
//! Memories are held in bfloat16, as transformers stores them (the memory
//! encoder already rounds its output to bfloat16 values, so nothing is lost):
//! half the bytes of f32.

use std::collections::VecDeque;

use half::bf16;

/// One memory map, [memory_dim, h, w].
type Map = Vec<bf16>;

fn to_map(values: Vec<f32>) -> Map {
    values.into_iter().map(bf16::from_f32).collect()
}

/// A conditioning frame: the object's creation frame or a reconditioned one.
struct Conditioning {
    frame: u64,
    memory: Map,
    pointer: Vec<f32>,
}

/// The sizes that bound a bank.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// `num_maskmem`: memory slots, the conditioning one included.
    pub num_maskmem: usize,
    /// `max_cond_frame_num`: conditioning memories memory attention reads.
    pub select_cond: usize,
    /// Conditioning frames held (the `max_cond_frames` limit).
    pub hold_cond: usize,
    /// `max_object_pointers`.
    pub max_pointers: usize,
}

/// What one object's memory attention reads on a frame, in transformers'
/// order.
pub(crate) struct Gathered<'a> {
    pub memories: Vec<&'a [bf16]>,
    /// 0 for a conditioning memory, else how many frames back.
    pub memory_offsets: Vec<i64>,
    pub pointers: Vec<&'a [f32]>,
    /// Frame distance of each pointer.
    pub pointer_offsets: Vec<f32>,
}

#[derive(Default)]
pub(crate) struct ObjectMemory {
    /// In frame order.
    cond: Vec<Conditioning>,
    /// (frame, memory) of recent frames that were not conditioning ones (or
    /// were, and left `cond`), frame order.
    memories: VecDeque<(u64, Map)>,
    /// (frame, pointer) of recent non-conditioning frames, frame order.
    pointers: VecDeque<(u64, Vec<f32>)>,
}

impl ObjectMemory {
    /// `_gather_memory_frame_outputs` and `_get_object_pointers` for frame `f`
    /// (streaming: every stored frame is before `f`).
    pub fn gather(&self, f: u64, b: &Bounds) -> Gathered<'_> {
        // Conditioning memories: all, or the `select_cond` closest to f (the
        // latest first, then by distance), as _select_closest_cond_frames.
        let mut selected: Vec<usize> = (0..self.cond.len()).collect();
        let mut unselected: Vec<usize> = Vec::new();
        if self.cond.len() > b.select_cond {
            let before = (0..self.cond.len()).rev().find(|&i| self.cond[i].frame < f);
            let after = (0..self.cond.len()).find(|&i| self.cond[i].frame >= f);
            selected = before.into_iter().chain(after).collect();
            let mut rest: Vec<usize> = (0..self.cond.len())
                .filter(|i| !selected.contains(i))
                .collect();
            rest.sort_by_key(|&i| self.cond[i].frame.abs_diff(f));
            let room = b.select_cond.saturating_sub(selected.len());
            unselected = rest.split_off(room.min(rest.len()));
            selected.extend(rest);
        }
        let mut g = Gathered {
            memories: selected
                .iter()
                .map(|&i| self.cond[i].memory.as_slice())
                .collect(),
            memory_offsets: vec![0; selected.len()],
            pointers: Vec::new(),
            pointer_offsets: Vec::new(),
        };
        // The num_maskmem - 1 previous frames, oldest first; a frame the
        // object has no output for is skipped. An unselected conditioning
        // frame in that window counts as a recent one (as in transformers).
        for off in (1..b.num_maskmem as u64).rev() {
            let Some(frame) = f.checked_sub(off) else {
                continue;
            };
            let memory = self
                .memories
                .iter()
                .find(|(k, _)| *k == frame)
                .map(|(_, m)| m.as_slice())
                .or_else(|| {
                    unselected
                        .iter()
                        .map(|&i| &self.cond[i])
                        .find(|c| c.frame == frame)
                        .map(|c| c.memory.as_slice())
                });
            if let Some(m) = memory {
                g.memories.push(m);
                g.memory_offsets.push(off as i64);
            }
        }
        // Pointers: every conditioning frame held (transformers: every one,
        // uncapped), then the non-conditioning frames f-1 ... f-(max-1).
        for c in self.cond.iter().filter(|c| c.frame <= f) {
            g.pointers.push(&c.pointer);
            g.pointer_offsets.push((f - c.frame) as f32);
        }
        for d in 1..b.max_pointers as u64 {
            let Some(frame) = f.checked_sub(d) else {
                break;
            };
            if let Some((_, p)) = self.pointers.iter().find(|(k, _)| *k == frame) {
                g.pointers.push(p);
                g.pointer_offsets.push(d as f32);
            }
        }
        g
    }

    /// Frame `f`'s output became a conditioning frame (creation or
    /// reconditioning). Beyond `hold_cond`, the oldest conditioning frame
    /// leaves: its memory joins the recent ones (read while in the window,
    /// as transformers reads an unselected one), its pointer is dropped.
    pub fn add_conditioning(&mut self, f: u64, memory: Vec<f32>, pointer: Vec<f32>, b: &Bounds) {
        self.cond.push(Conditioning {
            frame: f,
            memory: to_map(memory),
            pointer,
        });
        while self.cond.len() > b.hold_cond.max(1) {
            let old = self.cond.remove(0);
            let at = self.memories.partition_point(|(k, _)| *k < old.frame);
            self.memories.insert(at, (old.frame, old.memory));
        }
        self.prune(f, b);
    }

    /// Frame `f`'s output as a recent (non-conditioning) frame.
    pub fn add_recent(&mut self, f: u64, memory: Vec<f32>, pointer: Vec<f32>, b: &Bounds) {
        self.memories.push_back((f, to_map(memory)));
        self.pointers.push_back((f, pointer));
        self.prune(f, b);
    }

    /// Drops what the step after `f` and every later one can no longer read.
    fn prune(&mut self, f: u64, b: &Bounds) {
        // The next step, f + 1, reads frames f + 1 - (n - 1) ... f.
        let keep = |frame: u64, n: usize| frame + n as u64 >= f + 2;
        while self
            .memories
            .front()
            .is_some_and(|(k, _)| !keep(*k, b.num_maskmem))
        {
            self.memories.pop_front();
        }
        while self
            .pointers
            .front()
            .is_some_and(|(k, _)| !keep(*k, b.max_pointers))
        {
            self.pointers.pop_front();
        }
    }

    /// Bytes held: memories and pointers, and their bookkeeping.
    pub fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Vec<f32>)>();
        self.cond
            .iter()
            .map(|c| {
                std::mem::size_of::<Conditioning>()
                    + std::mem::size_of_val(c.memory.as_slice())
                    + std::mem::size_of_val(c.pointer.as_slice())
            })
            .sum::<usize>()
            + (self.memories.iter())
                .map(|(_, v)| entry + std::mem::size_of_val(v.as_slice()))
                .sum::<usize>()
            + (self.pointers.iter())
                .map(|(_, v)| entry + std::mem::size_of_val(v.as_slice()))
                .sum::<usize>()
    }

    /// Conditioning frames held.
    pub fn conditioning_frames(&self) -> usize {
        self.cond.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(g: &Gathered) -> Vec<Vec<f32>> {
        g.memories
            .iter()
            .map(|m| m.iter().map(|v| v.to_f32()).collect())
            .collect()
    }

    #[test]
    fn memories_are_held_in_bfloat16() {
        let mut m = ObjectMemory::default();
        // 1 + 2^-9 is between two bfloat16 values: it rounds to 1.
        m.add_conditioning(0, vec![1.5, 1.0 + 1.0 / 512.0], vec![0.0], &B);
        assert_eq!(values(&m.gather(1, &B)), vec![vec![1.5, 1.0]]);
        assert_eq!(m.bytes(), std::mem::size_of::<Conditioning>() + 2 * 2 + 4);
    }

    const B: Bounds = Bounds {
        num_maskmem: 3,
        select_cond: 2,
        hold_cond: 2,
        max_pointers: 4,
    };

    #[test]
    fn a_bank_holds_the_windows_and_reads_them_in_order() {
        let mut m = ObjectMemory::default();
        m.add_conditioning(0, vec![0.0], vec![0.0], &B);
        for f in 1..10u64 {
            m.add_recent(f, vec![f as f32], vec![f as f32], &B);
        }
        let g = m.gather(10, &B);
        // conditioning 0, then frames 8 and 9 (num_maskmem - 1 = 2)
        assert_eq!(g.memory_offsets, vec![0, 2, 1]);
        assert_eq!(values(&g), vec![vec![0.0], vec![8.0], vec![9.0]]);
        // pointers: conditioning (10 back), then 1, 2, 3 frames back
        assert_eq!(g.pointer_offsets, vec![10.0, 1.0, 2.0, 3.0]);
        assert_eq!((m.memories.len(), m.pointers.len()), (2, 3));
    }

    #[test]
    fn the_oldest_conditioning_frame_leaves_and_its_memory_stays_while_in_the_window() {
        let mut m = ObjectMemory::default();
        m.add_conditioning(0, vec![0.0], vec![0.0], &B);
        m.add_conditioning(1, vec![1.0], vec![1.0], &B);
        m.add_conditioning(2, vec![2.0], vec![2.0], &B);
        assert_eq!(m.conditioning_frames(), 2);
        let g = m.gather(3, &B);
        // conditioning 1 and 2; frame 1 is in the window but is a
        // conditioning memory already, frame 0 left the window.
        assert_eq!(values(&g), vec![vec![1.0], vec![2.0]]);
        assert_eq!(g.pointer_offsets, vec![2.0, 1.0]);
        let mut m = ObjectMemory::default();
        let hold_one = Bounds { hold_cond: 1, ..B };
        m.add_conditioning(0, vec![0.0], vec![0.0], &hold_one);
        m.add_conditioning(1, vec![1.0], vec![1.0], &hold_one);
        let g = m.gather(2, &hold_one);
        // frame 0's memory is a recent one now (2 back)
        assert_eq!(values(&g), vec![vec![1.0], vec![0.0]]);
        assert_eq!(g.memory_offsets, vec![0, 2]);
    }
}
