//! Control flow of a function snapshot: reverse post-order, dominators and natural loops.

use crate::ir::Func;

/// One natural loop.
#[derive(Debug, Clone)]
pub(crate) struct Loop {
    /// The block every iteration enters through.
    pub header: u32,
    /// Every block of the loop (inner loops included), sorted.
    pub blocks: Vec<u32>,
    /// Blocks with an edge back to the header.
    pub latches: Vec<u32>,
    /// The innermost loop that contains this one.
    pub parent: Option<u32>,
    /// 1 for outermost loops.
    pub depth: u32,
}

/// The loop structure of a function.
#[derive(Debug, Clone)]
pub(crate) struct Cfg {
    /// Blocks reachable from the entry, in reverse post-order.
    pub rpo: Vec<u32>,
    /// Loops, outer loops before the loops they contain.
    pub loops: Vec<Loop>,
    /// Innermost loop of each block.
    pub loop_of: Vec<Option<u32>>,
}

impl Cfg {
    /// Build the CFG facts of `f`.
    pub fn of(f: &Func) -> Cfg {
        let n = f.blocks.len();
        let mut preds = vec![Vec::new(); n];
        for (b, block) in f.blocks.iter().enumerate() {
            for &s in &block.succs {
                preds[s as usize].push(b as u32);
            }
        }
        let rpo = reverse_post_order(f);
        let idom = dominators(&rpo, &preds, n);
        let order: Vec<usize> = {
            let mut o = vec![usize::MAX; n];
            for (i, &b) in rpo.iter().enumerate() {
                o[b as usize] = i;
            }
            o
        };
        let dominates = |a: u32, mut b: u32| -> bool {
            loop {
                if a == b {
                    return true;
                }
                match idom[b as usize] {
                    Some(p) if p != b => b = p,
                    _ => return false,
                }
            }
        };
        // Natural loops, merged per header.
        let mut by_header: Vec<(u32, Vec<u32>, Vec<u32>)> = Vec::new();
        for &u in &rpo {
            for &h in &f.blocks[u as usize].succs {
                if order[h as usize] == usize::MAX || !dominates(h, u) {
                    continue;
                }
                let mut body = vec![false; n];
                body[h as usize] = true;
                let mut stack = vec![u];
                while let Some(x) = stack.pop() {
                    if body[x as usize] {
                        continue;
                    }
                    body[x as usize] = true;
                    stack.extend(
                        preds[x as usize]
                            .iter()
                            .copied()
                            .filter(|&p| order[p as usize] != usize::MAX),
                    );
                }
                let blocks: Vec<u32> = (0..n as u32).filter(|&b| body[b as usize]).collect();
                match by_header.iter_mut().find(|(hh, _, _)| *hh == h) {
                    Some((_, bl, latches)) => {
                        let mut merged: Vec<u32> =
                            bl.iter().chain(blocks.iter()).copied().collect();
                        merged.sort_unstable();
                        merged.dedup();
                        *bl = merged;
                        latches.push(u);
                    }
                    None => by_header.push((h, blocks, vec![u])),
                }
            }
        }
        // Outer loops first: larger loops first.
        by_header.sort_by_key(|(h, b, _)| (std::cmp::Reverse(b.len()), *h));
        let mut loops: Vec<Loop> = Vec::with_capacity(by_header.len());
        for (header, blocks, latches) in by_header {
            let parent = (0..loops.len())
                .rev()
                .find(|&p| loops[p].blocks.binary_search(&header).is_ok())
                .map(|p| p as u32);
            let depth = parent.map_or(1, |p| loops[p as usize].depth + 1);
            loops.push(Loop {
                header,
                blocks,
                latches,
                parent,
                depth,
            });
        }
        let mut loop_of = vec![None; n];
        for (i, l) in loops.iter().enumerate() {
            for &b in &l.blocks {
                // Later loops are nested deeper (or disjoint), so the last writer is innermost.
                loop_of[b as usize] = Some(i as u32);
            }
        }
        Cfg {
            rpo,
            loops,
            loop_of,
        }
    }
}

fn reverse_post_order(f: &Func) -> Vec<u32> {
    let n = f.blocks.len();
    if n == 0 {
        return Vec::new();
    }
    let mut seen = vec![false; n];
    let mut post = Vec::with_capacity(n);
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    seen[0] = true;
    while let Some(&mut (b, ref mut next)) = stack.last_mut() {
        let succs = &f.blocks[b as usize].succs;
        if *next < succs.len() {
            let s = succs[*next];
            *next += 1;
            if !seen[s as usize] {
                seen[s as usize] = true;
                stack.push((s, 0));
            }
        } else {
            post.push(b);
            stack.pop();
        }
    }
    post.reverse();
    post
}

/// Immediate dominators (Cooper, Harvey and Kennedy's iterative algorithm).
fn dominators(rpo: &[u32], preds: &[Vec<u32>], n: usize) -> Vec<Option<u32>> {
    let mut order = vec![usize::MAX; n];
    for (i, &b) in rpo.iter().enumerate() {
        order[b as usize] = i;
    }
    let mut idom: Vec<Option<u32>> = vec![None; n];
    let Some(&entry) = rpo.first() else {
        return idom;
    };
    idom[entry as usize] = Some(entry);
    let intersect = |idom: &[Option<u32>], mut a: u32, mut b: u32| -> u32 {
        while a != b {
            while order[a as usize] > order[b as usize] {
                a = idom[a as usize].unwrap_or(entry);
            }
            while order[b as usize] > order[a as usize] {
                b = idom[b as usize].unwrap_or(entry);
            }
        }
        a
    };
    let mut changed = true;
    while changed {
        changed = false;
        for &b in rpo.iter().skip(1) {
            let mut new: Option<u32> = None;
            for &p in &preds[b as usize] {
                if idom[p as usize].is_none() {
                    continue;
                }
                new = Some(match new {
                    None => p,
                    Some(cur) => intersect(&idom, p, cur),
                });
            }
            if new.is_some() && idom[b as usize] != new {
                idom[b as usize] = new;
                changed = true;
            }
        }
    }
    idom
}
