import KMSCrypto

/// The Merkle tree of RFC 9162 section 2.1 (Certificate Transparency 2.0), with SHA-256: leaf
/// hashes are SHA-256(0x00 || input), interior nodes SHA-256(0x01 || left || right), and a tree
/// of n leaves splits at the largest power of two below n. Proof checking is written as the RFC
/// gives it (sections 2.1.3.2 and 2.1.4.2), so any RFC 9162 verifier agrees with it.
public enum Merkle {
    public static let hashSize = 32

    /// MTH({}) = SHA-256 of the empty string.
    public static let emptyRoot = Digest.sha256([])

    public static func leafHash(_ input: [UInt8]) -> [UInt8] { Digest.sha256([0] + input) }

    public static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { Digest.sha256([1] + left + right) }

    /// The root that an inclusion proof leads to, or nil if the proof has the wrong shape
    /// (RFC 9162 section 2.1.3.2). The caller compares it with the signed root.
    public static func root(fromInclusion path: [[UInt8]], index: UInt64, size: UInt64, leafHash: [UInt8]) -> [UInt8]? {
        guard index < size, path.allSatisfy({ $0.count == hashSize }) else { return nil }
        var fn = index
        var sn = size - 1
        var r = leafHash
        for p in path {
            guard sn != 0 else { return nil }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                shiftToRightEdge(&fn, &sn)
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 ? r : nil
    }

    /// Whether `path` proves that the tree of `newSize` leaves with root `newRoot` extends the
    /// tree of `oldSize` leaves with root `oldRoot` (RFC 9162 section 2.1.4.2; equal sizes need
    /// equal roots and an empty path, and every tree extends the empty one).
    public static func isConsistent(
        oldSize: UInt64, oldRoot: [UInt8], newSize: UInt64, newRoot: [UInt8], path: [[UInt8]]
    ) -> Bool {
        guard oldSize <= newSize, path.allSatisfy({ $0.count == hashSize }) else { return false }
        if oldSize == newSize { return path.isEmpty && oldRoot == newRoot }
        if oldSize == 0 { return path.isEmpty }
        guard !path.isEmpty else { return false }
        var path = path
        if oldSize & (oldSize - 1) == 0 { path.insert(oldRoot, at: 0) }
        var fn = oldSize - 1
        var sn = newSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path[0]
        var sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                shiftToRightEdge(&fn, &sn)
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return fr == oldRoot && sr == newRoot && sn == 0
    }

    /// The step both RFC 9162 verifiers take after hashing a left sibling in: "if LSB(fn) is not
    /// set, right-shift both fn and sn equally until either LSB(fn) is set or fn is 0".
    private static func shiftToRightEdge(_ fn: inout UInt64, _ sn: inout UInt64) {
        while fn & 1 == 0 && fn != 0 {
            fn >>= 1
            sn >>= 1
        }
    }

    /// The largest power of two strictly below `n` (n > 1): where RFC 9162 splits a tree.
    static func split(_ n: UInt64) -> UInt64 {
        var k: UInt64 = 1
        while k << 1 < n { k <<= 1 }
        return k
    }
}

/// A growing tree held in memory: for every level, the hashes of the complete subtrees of
/// 2^level leaves in a row, 32 bytes each in one flat array (a million leaves take 64 MB).
/// Every subtree RFC 9162's recursion visits is either such a complete, aligned subtree or is
/// split again, so roots and proofs for any size cost O(log² n) hashes, not O(n).
public struct MerkleTree: Sendable {
    private var levels: [[UInt8]] = [[]]

    public init() {}

    public var size: UInt64 { UInt64(levels[0].count / Merkle.hashSize) }

    public mutating func append(leafHash: [UInt8]) {
        precondition(leafHash.count == Merkle.hashSize)
        levels[0] += leafHash
        var level = 0
        // Each time a level gains an even count, its last two hashes make a node one up.
        while count(at: level) % 2 == 0 {
            let n = count(at: level)
            let node = Merkle.nodeHash(hash(level, n - 2), hash(level, n - 1))
            if levels.count == level + 1 { levels.append([]) }
            levels[level + 1] += node
            level += 1
        }
    }

    /// Forgets the leaves from `size` on (an append that could not be written).
    public mutating func truncate(to size: UInt64) {
        for level in levels.indices {
            let keep = Int(size >> UInt64(level)) * Merkle.hashSize
            if levels[level].count > keep { levels[level].removeSubrange(keep...) }
        }
    }

    /// The leaf hash at `index`.
    public func leafHash(at index: UInt64) -> [UInt8] { hash(0, Int(index)) }

    /// MTH of the first `size` leaves.
    public func root(size: UInt64) -> [UInt8] {
        precondition(size <= self.size)
        return size == 0 ? Merkle.emptyRoot : subtree(0, size)
    }

    /// PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1.
    public func inclusionPath(index: UInt64, size: UInt64) -> [[UInt8]] {
        precondition(index < size && size <= self.size)
        return path(index, 0, size)
    }

    /// PROOF(old, D[0:new]) of RFC 9162 section 2.1.4.1.
    public func consistencyPath(old: UInt64, new: UInt64) -> [[UInt8]] {
        precondition(old <= new && new <= self.size)
        guard old > 0, old < new else { return [] }
        return subproof(old, 0, new, complete: true)
    }

    private func count(at level: Int) -> Int { levels[level].count / Merkle.hashSize }

    private func hash(_ level: Int, _ index: Int) -> [UInt8] {
        let start = index * Merkle.hashSize
        return Array(levels[level][start..<start + Merkle.hashSize])
    }

    /// MTH(D[low:high]).
    private func subtree(_ low: UInt64, _ high: UInt64) -> [UInt8] {
        let n = high - low
        if n & (n - 1) == 0 {
            let level = n.trailingZeroBitCount
            return hash(level, Int(low >> UInt64(level)))
        }
        let k = Merkle.split(n)
        return Merkle.nodeHash(subtree(low, low + k), subtree(low + k, high))
    }

    private func path(_ m: UInt64, _ low: UInt64, _ high: UInt64) -> [[UInt8]] {
        let n = high - low
        guard n > 1 else { return [] }
        let k = Merkle.split(n)
        return m < k
            ? path(m, low, low + k) + [subtree(low + k, high)]
            : path(m - k, low + k, high) + [subtree(low, low + k)]
    }

    private func subproof(_ m: UInt64, _ low: UInt64, _ high: UInt64, complete: Bool) -> [[UInt8]] {
        let n = high - low
        if m == n { return complete ? [] : [subtree(low, high)] }
        let k = Merkle.split(n)
        return m <= k
            ? subproof(m, low, low + k, complete: complete) + [subtree(low + k, high)]
            : subproof(m - k, low + k, high, complete: false) + [subtree(low, low + k)]
    }
}

/// The right edge of a tree: the roots of its complete subtrees, largest first (one per bit of
/// the size). Enough to append leaves and compute the new root without the old leaves, as a
/// monitor following a log does (RFC 9162's MTH splits exactly along these subtrees).
public struct CompactRange: Hashable, Sendable, Codable {
    public private(set) var size: UInt64 = 0
    /// The hash of each complete subtree, left to right.
    public private(set) var subtrees: [[UInt8]] = []

    public init() {}

    public mutating func append(leafHash: [UInt8]) {
        subtrees.append(leafHash)
        size += 1
        // A subtree merges with its left neighbour while the size's low bits say they are equal.
        var merges = size.trailingZeroBitCount
        while merges > 0 {
            let right = subtrees.removeLast()
            let left = subtrees.removeLast()
            subtrees.append(Merkle.nodeHash(left, right))
            merges -= 1
        }
    }

    /// MTH of the leaves appended so far.
    public var root: [UInt8] {
        guard var root = subtrees.last else { return Merkle.emptyRoot }
        for hash in subtrees.dropLast().reversed() { root = Merkle.nodeHash(hash, root) }
        return root
    }
}
