//! The RFC 6962 Merkle tree over a node's log: tree heads, inclusion and
//! consistency proofs, and their verification.
//!
//! **Leaves.** Leaf *i* (0-based) of a node's tree is record `seq = i + 1` of
//! its log, and its leaf bytes are the **32 raw bytes of that record's chain
//! hash** (the `hash` field, hex-decoded). So the leaf hash is
//! `SHA-256(0x00 || hash)` and an interior node `SHA-256(0x01 || left ||
//! right)`, exactly as RFC 6962 §2.1 defines them (the tree of RFC 9162
//! §2.1.1 is the same). The chain hash already covers the record's every
//! byte and, through `prev`, every record before it.
//!
//! Owns only the arithmetic: it reads no files (see [`super::checkpoint`]
//! and [`super::tree`]). The tree head is computed streaming, in O(log n)
//! memory (a stack of subtree hashes: [`TreeBuilder`]). Proofs are computed
//! from any [`Nodes`] source, which answers the root of a complete aligned
//! subtree: from a list of leaf hashes ([`Leaves`], O(n) hashing) or from
//! stored tree levels ([`super::tree`], O(log² n) lookups).

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash: a leaf hash, a subtree hash or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of no bytes (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Builds a tree head leaf by leaf in O(log n) memory: a stack of the roots
/// of complete subtrees, largest first, whose sizes are the set bits of the
/// leaf count (RFC 6962's left subtrees are always the largest power of two
/// below the size, so these are exactly its subtrees).
#[derive(Debug, Clone, Default)]
pub struct TreeBuilder {
    /// (subtree size, subtree root), sizes strictly decreasing.
    stack: Vec<(u64, Hash)>,
    size: u64,
}

impl TreeBuilder {
    pub fn new() -> TreeBuilder {
        TreeBuilder::default()
    }

    /// Appends one leaf, given as its leaf hash ([`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (1u64, leaf);
        while let Some(&(size, left)) = self.stack.last() {
            if size != node.0 {
                break;
            }
            self.stack.pop();
            node = (size * 2, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves pushed so far: the subtrees folded from the
    /// smallest (rightmost) up.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            root = node_hash(left, &root);
        }
        root
    }
}

/// The root of a list of leaf hashes (streaming, O(log n) memory).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut b = TreeBuilder::new();
    for leaf in leaves {
        b.push(*leaf);
    }
    b.root()
}

/// The largest power of two strictly below `n` (n ≥ 2): where RFC 6962
/// splits a tree of `n` leaves.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// Why a proof was not produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < old size ({old}) <= new size ({new})")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// Where the hashes of a tree come from: the root of every complete,
/// aligned subtree, `MTH(D[start .. start + 2^level])` with `start` a
/// multiple of `2^level`. Every node RFC 6962 needs is a fold of a few of
/// those ([`range_root`]), so a proof asks a source for O(log² n) of them:
/// a list of leaf hashes ([`Leaves`]) computes each from its leaves, stored
/// tree levels ([`super::tree`]) read them.
pub trait Nodes {
    type Error: From<ProofError>;
    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash, Self::Error>;
}

/// A list of leaf hashes as a [`Nodes`] source: each subtree hashed from
/// its leaves (O(n) for a proof over n leaves).
pub struct Leaves<'a>(pub &'a [Hash]);

impl Nodes for Leaves<'_> {
    type Error = ProofError;
    fn subtree(&mut self, start: u64, level: u32) -> Result<Hash, ProofError> {
        let size = self.0.len() as u64;
        let end = start.saturating_add(1u64 << level);
        if end > size {
            return Err(ProofError::IndexOutOfRange {
                index: end - 1,
                size,
            });
        }
        // Both fit: end <= len.
        Ok(root(&self.0[start as usize..end as usize]))
    }
}

/// `MTH(D[a..b])`, the root of leaves `a..b` split as RFC 6962 splits
/// them: one subtree when the range is a complete aligned one, else the
/// fold of its left part (the largest power of two below its size) and the
/// rest. The empty range is the empty tree.
pub fn range_root<N: Nodes + ?Sized>(src: &mut N, a: u64, b: u64) -> Result<Hash, N::Error> {
    let n = b.saturating_sub(a);
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && a.is_multiple_of(n) {
        return src.subtree(a, n.trailing_zeros());
    }
    let k = split(n);
    let left = range_root(src, a, a + k)?;
    let right = range_root(src, a + k, b)?;
    Ok(node_hash(&left, &right))
}

/// The inclusion proof (audit path, RFC 6962 §2.1.1 `PATH(m, D[n])`) of
/// leaf `index` in the tree of `leaves`, nearest the leaf first.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_from(&mut Leaves(leaves), index, leaves.len() as u64)
}

/// [`inclusion_proof`] of leaf `index` in the tree of the first `size`
/// leaves of `src`.
pub fn inclusion_proof_from<N: Nodes + ?Sized>(
    src: &mut N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, N::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// `PATH(m, D[a..b])`, `m` counted from `a`.
fn path<N: Nodes + ?Sized>(
    src: &mut N,
    m: u64,
    a: u64,
    b: u64,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    if b - a <= 1 {
        return Ok(());
    }
    let k = split(b - a);
    if m < k {
        path(src, m, a, a + k, out)?;
        out.push(range_root(src, a + k, b)?);
    } else {
        path(src, m - k, a + k, b, out)?;
        out.push(range_root(src, a, a + k)?);
    }
    Ok(())
}

/// The consistency proof (RFC 6962 §2.1.2 `PROOF(m, D[n])`) that the tree
/// of the first `old` leaves is a prefix of the tree of all `leaves`.
pub fn consistency_proof(old: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    consistency_proof_from(&mut Leaves(leaves), old, leaves.len() as u64)
}

/// [`consistency_proof`] from the first `old` to the first `new` leaves of
/// `src`.
pub fn consistency_proof_from<N: Nodes + ?Sized>(
    src: &mut N,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, N::Error> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new }.into());
    }
    let mut proof = Vec::new();
    subproof(src, old, 0, new, true, &mut proof)?;
    Ok(proof)
}

/// `SUBPROOF(m, D[a..b], whole)`.
fn subproof<N: Nodes + ?Sized>(
    src: &mut N,
    m: u64,
    a: u64,
    b: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    if m == b - a {
        if !whole {
            out.push(range_root(src, a, b)?);
        }
        return Ok(());
    }
    let k = split(b - a);
    if m <= k {
        subproof(src, m, a, a + k, whole, out)?;
        out.push(range_root(src, a + k, b)?);
    } else {
        subproof(src, m - k, a + k, b, false, out)?;
        out.push(range_root(src, a, a + k)?);
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is leaf
/// `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of `old`
/// leaves with root `old_root` is a prefix of the tree of `new` leaves with
/// root `new_root`. Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return match old_root == new_root {
            true => Ok(()),
            false => Err(ProofError::RootMismatch),
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    // When the old tree is a complete subtree, its root is the proof's
    // implicit first node.
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn hex(s: &str) -> Hash {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// The eight leaves of the certificate-transparency test data.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// MTH(D[n]) for n = 1..8 over [`LEAVES`].
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
    }

    #[test]
    fn the_rfc6962_roots_of_the_eight_test_leaves() {
        let l = leaves();
        assert_eq!(
            root(&[]),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        for n in 1..=8 {
            assert_eq!(root(&l[..n]), hex(ROOTS[n - 1]), "root of {n} leaves");
        }
    }

    #[test]
    fn the_rfc6962_inclusion_paths_of_the_test_data() {
        let l = leaves();
        // (leaf index, tree size, path) from the certificate-transparency test data.
        let cases: &[(u64, usize, &[&str])] = &[
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, expected) in cases {
            let expected: Vec<Hash> = expected.iter().map(|h| hex(h)).collect();
            let proof = inclusion_proof(*index, &l[..*size]).unwrap();
            assert_eq!(proof, expected, "path of leaf {index} in {size}");
            let r = hex(ROOTS[size - 1]);
            verify_inclusion(*index, *size as u64, &l[*index as usize], &proof, &r).unwrap();
        }
    }

    #[test]
    fn the_rfc6962_consistency_proofs_of_the_test_data() {
        let l = leaves();
        let cases: &[(u64, usize, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, expected) in cases {
            let expected: Vec<Hash> = expected.iter().map(|h| hex(h)).collect();
            let proof = consistency_proof(*old, &l[..*new]).unwrap();
            assert_eq!(proof, expected, "proof {old} -> {new}");
            let (r1, r2) = (hex(ROOTS[*old as usize - 1]), hex(ROOTS[new - 1]));
            verify_consistency(*old, *new as u64, &proof, &r1, &r2).unwrap();
            // The roots swapped, or another old root, do not verify.
            if *old as usize != *new {
                assert!(verify_consistency(*old, *new as u64, &proof, &r2, &r1).is_err());
            }
        }
    }

    /// Every proof for every size up to 70 verifies, and a proof with any
    /// one hash flipped, one hash dropped, or checked at another index,
    /// does not. (A path can fit another size too: the checkpoint binds it.)
    #[test]
    fn every_proof_of_every_size_up_to_70_verifies_and_no_edit_of_one_does() {
        let all: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut b = TreeBuilder::new();
        let mut roots = vec![empty_root()];
        for leaf in &all {
            b.push(*leaf);
            roots.push(b.root());
        }
        for n in 1..=all.len() {
            let d = &all[..n];
            let r = roots[n];
            assert_eq!(r, reference_root(d), "streaming root of {n}");
            for i in 0..n as u64 {
                let p = inclusion_proof(i, d).unwrap();
                assert_eq!(p, reference_path(i as usize, d), "path of {i} in {n}");
                verify_inclusion(i, n as u64, &d[i as usize], &p, &r).unwrap();
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j][0] ^= 1;
                    assert!(verify_inclusion(i, n as u64, &d[i as usize], &bad, &r).is_err());
                    let mut short = p.clone();
                    short.remove(j);
                    assert!(verify_inclusion(i, n as u64, &d[i as usize], &short, &r).is_err());
                }
                let other = (i + 1) % n as u64;
                if other != i {
                    assert!(verify_inclusion(other, n as u64, &d[i as usize], &p, &r).is_err());
                }
            }
            for m in 1..=n as u64 {
                let p = consistency_proof(m, d).unwrap();
                assert_eq!(p, reference_proof(m as usize, d, true), "proof {m} -> {n}");
                let old = roots[m as usize];
                verify_consistency(m, n as u64, &p, &old, &r).unwrap();
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j][31] ^= 0x80;
                    assert!(verify_consistency(m, n as u64, &bad, &old, &r).is_err());
                }
                if m < n as u64 {
                    assert!(
                        verify_consistency(m, n as u64, &p, &roots[m as usize + 1], &r).is_err()
                    );
                    let mut extra = p.clone();
                    extra.push(r);
                    assert!(verify_consistency(m, n as u64, &extra, &old, &r).is_err());
                }
            }
        }
    }

    /// MTH as RFC 6962 writes it, recursively: what the streaming builder
    /// must agree with.
    pub(crate) fn reference_root(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&d[..k]), &reference_root(&d[k..]))
            }
        }
    }

    /// `PATH(m, D[n])` as RFC 6962 writes it, over the leaves themselves:
    /// what a proof from any [`Nodes`] source must equal.
    pub(crate) fn reference_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return Vec::new();
        }
        let k = split(d.len() as u64) as usize;
        let (mut p, other) = match m < k {
            true => (reference_path(m, &d[..k]), &d[k..]),
            false => (reference_path(m - k, &d[k..]), &d[..k]),
        };
        p.push(reference_root(other));
        p
    }

    /// `PROOF(m, D[n])` as RFC 6962 writes it, over the leaves themselves.
    pub(crate) fn reference_proof(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
        if m == d.len() {
            return match whole {
                true => Vec::new(),
                false => vec![reference_root(d)],
            };
        }
        let k = split(d.len() as u64) as usize;
        let (mut p, other) = match m <= k {
            true => (reference_proof(m, &d[..k], whole), &d[k..]),
            false => (reference_proof(m - k, &d[k..], false), &d[..k]),
        };
        p.push(reference_root(other));
        p
    }
}
