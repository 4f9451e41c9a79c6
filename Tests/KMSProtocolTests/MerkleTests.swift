import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
import Testing

/// The RFC 9162 tree, against the Certificate Transparency reference vectors and against its
/// own definition for every shape up to 40 leaves.
@Suite struct MerkleTests {
    /// The eight leaves of the CT reference tests (RFC 6962 test data, also RFC 9162's hashing).
    static let leaves: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                    "606162636465666768696a6b6c6d6e6f"].map { hex($0) }
    static let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ].map { hex($0) }

    static func tree(_ leafHashes: [[UInt8]]) -> MerkleTree {
        var tree = MerkleTree()
        for hash in leafHashes { tree.append(leafHash: hash) }
        return tree
    }

    /// MTH written straight from RFC 9162 section 2.1.1, for comparison.
    static func reference(_ hashes: ArraySlice<[UInt8]>) -> [UInt8] {
        if hashes.isEmpty { return Merkle.emptyRoot }
        if hashes.count == 1 { return hashes.first! }
        var k = 1
        while k * 2 < hashes.count { k *= 2 }
        let start = hashes.startIndex
        return Merkle.nodeHash(reference(hashes[start..<start + k]), reference(hashes[(start + k)...]))
    }

    static let many: [[UInt8]] = (0..<40).map { Merkle.leafHash([UInt8($0), UInt8(truncatingIfNeeded: $0 &* 7)]) }

    @Test func rootsMatchTheReferenceVectors() {
        let tree = Self.tree(Self.leaves.map(Merkle.leafHash))
        for size in 0...8 {
            #expect(tree.root(size: UInt64(size)) == Self.roots[size], "size \(size)")
        }
    }

    @Test func inclusionProofsMatchTheReferenceVectors() {
        let tree = Self.tree(Self.leaves.map(Merkle.leafHash))
        #expect(tree.inclusionPath(index: 0, size: 8) == [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ].map { hex($0) })
        #expect(tree.inclusionPath(index: 5, size: 8) == [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ].map { hex($0) })
    }

    @Test func everyShapeHasTheRootOfTheDefinition() {
        let tree = Self.tree(Self.many)
        var range = CompactRange()
        #expect(range.root == Merkle.emptyRoot)
        for size in 1...Self.many.count {
            range.append(leafHash: Self.many[size - 1])
            let expected = Self.reference(Self.many[0..<size])
            #expect(tree.root(size: UInt64(size)) == expected, "size \(size)")
            #expect(range.root == expected, "compact range, size \(size)")
        }
    }

    @Test func everyInclusionProofVerifiesAndAnyChangeBreaksIt() {
        let tree = Self.tree(Self.many)
        for size in UInt64(1)...40 {
            let root = tree.root(size: size)
            for index in 0..<size {
                let path = tree.inclusionPath(index: index, size: size)
                let leaf = tree.leafHash(at: index)
                #expect(Merkle.root(fromInclusion: path, index: index, size: size, leafHash: leaf) == root, "\(index) of \(size)")
                // Another leaf, another index, a flipped bit, a dropped hash: never the root.
                #expect(Merkle.root(fromInclusion: path, index: index, size: size, leafHash: Merkle.leafHash([0xFF])) != root)
                if size > 1 {
                    #expect(Merkle.root(fromInclusion: path, index: (index + 1) % size, size: size, leafHash: leaf) != root)
                    var flipped = path
                    flipped[0][0] ^= 1
                    #expect(Merkle.root(fromInclusion: flipped, index: index, size: size, leafHash: leaf) != root)
                    #expect(Merkle.root(fromInclusion: Array(path.dropLast()), index: index, size: size, leafHash: leaf) != root)
                }
            }
        }
    }

    @Test func everyConsistencyProofVerifiesAndAForkDoesNot() {
        let tree = Self.tree(Self.many)
        // The same first leaves but a different eleventh: a log that rewrote history.
        var forked = Self.many
        forked[10] = Merkle.leafHash([0xEE])
        let fork = Self.tree(forked)
        for new in UInt64(1)...40 {
            for old in UInt64(1)...new {
                let path = tree.consistencyPath(old: old, new: new)
                #expect(Merkle.isConsistent(oldSize: old, oldRoot: tree.root(size: old), newSize: new, newRoot: tree.root(size: new), path: path),
                        "\(old) -> \(new)")
                if old < new {
                    // Against the fork's new root (when it differs) the proof fails.
                    if new > 10 {
                        #expect(!Merkle.isConsistent(oldSize: old, oldRoot: tree.root(size: old), newSize: new, newRoot: fork.root(size: new), path: path))
                    }
                    var flipped = path
                    flipped[flipped.count - 1][5] ^= 0x80
                    #expect(!Merkle.isConsistent(oldSize: old, oldRoot: tree.root(size: old), newSize: new, newRoot: tree.root(size: new), path: flipped))
                }
            }
        }
    }

    @Test func truncatingForgetsTheLastLeaves() {
        var tree = Self.tree(Self.many)
        tree.truncate(to: 13)
        #expect(tree.size == 13)
        #expect(tree.root(size: 13) == Self.reference(Self.many[0..<13]))
        tree.append(leafHash: Self.many[13])
        #expect(tree.root(size: 14) == Self.reference(Self.many[0..<14]))
    }

    @Test func logRecordsRoundTripAndAHeadIsSignedBySigner() throws {
        let signer = try PrivateKey(generating: .ed25519)
        let other = try PrivateKey(generating: .ed25519)
        let countersignature = try Countersignature.issue(
            target: "hostb.c.a.xx.", key: other.publicKey, signer: "xx.", signerKey: signer, notBefore: 100, notAfter: 200)
        let entry = LogEntry(countersignature, loggedAt: 150)
        let (index, parsed) = try #require(try LogEntry.parse(served: entry.strings(index: 7)))
        #expect(index == 7 && parsed == entry && parsed.leafHash == entry.leafHash)
        var tree = MerkleTree()
        tree.append(leafHash: Merkle.leafHash([1]))
        tree.append(leafHash: entry.leafHash)
        tree.append(leafHash: Merkle.leafHash([3]))
        let head = try TreeHead.sign(signer: "xx.", size: 3, root: tree.root(size: 3), time: 160, key: signer)
        let proof = InclusionProof(target: "hostb.c.a.xx.", index: 1, loggedAt: 150, path: tree.inclusionPath(index: 1, size: 3), head: head)
        let found = try #require(try InclusionProof.find(for: "hostb.c.a.xx.", in: proof.records))
        #expect(found == proof)
        try found.verify(countersignature, signerKey: signer.publicKey)
        // Signed by someone else: refused, saying so.
        #expect(throws: ProtocolError.self) { try found.verify(countersignature, signerKey: other.publicKey) }
        // Another logged time is another leaf: not in the tree.
        let moved = InclusionProof(target: proof.target, index: 1, loggedAt: 151, path: proof.path, head: head)
        do {
            try moved.verify(countersignature, signerKey: signer.publicKey)
            Issue.record("a proof for another leaf verified")
        } catch {
            #expect("\(error)".contains("does not lead to the root"))
        }
    }

    @Test func logQueryNamesRoundTripAndOthersAreNotLogQueries() throws {
        for query in [LogQuery.head, .entries(first: 0, end: 100), .consistency(old: 3, new: 8)] {
            let name = try #require(query.name(signer: "xx."))
            #expect(LogQuery(name: name, signer: "xx.") == query)
            #expect(LogQuery.isUnder(name, signer: "xx."))
            #expect(LogQuery(name: name, signer: "a.xx.") == nil)
        }
        #expect(LogQuery(name: "_HEAD._KMS1LOG.XX.", signer: "xx.") == .head)
        for other in ["hostb.c.a.xx.", "_kms1log.xx.", "x._kms1log.a.xx.", "5-2._entries._kms1log.xx.", "1-2._other._kms1log.xx.",
                      "_head._kms1logs.xx."] as [DomainName] {
            #expect(LogQuery(name: other, signer: "xx.") == nil, "\(other)")
        }
    }
}
