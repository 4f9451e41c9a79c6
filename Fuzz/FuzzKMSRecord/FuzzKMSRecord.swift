import DNSWire
import FuzzReplay
import KMSCrypto
import KMSProtocol

/// A query carrying a KMS record, as a KMS receives one: the record and every parser of
/// PROTOCOL.md must refuse bad input with an error, never crash, and a signature check over
/// whatever parsed must simply fail.
let key = try! PrivateKey(ed25519Seed: Array(repeating: 7, count: 32)).publicKey

/// The transparency log's records (`kms1-entry`, `kms1-head`, `kms1-proof`, `kms1-consistency`)
/// in any section: parsed, and a proof that parses checked against whatever it names.
func checkLogRecords(_ message: DNSMessage) {
    let records = message.answers + message.authorities + message.additionals
    for rr in records {
        guard case .txt(let strings) = rr.data else { continue }
        _ = try? LogEntry.parse(served: strings)
        _ = try? LogEntry(strings: strings)
        _ = try? TreeHead(owner: rr.name, strings: strings)
        if let proof = try? ConsistencyProof(strings: strings) {
            _ = Merkle.isConsistent(oldSize: proof.old, oldRoot: Merkle.emptyRoot, newSize: proof.new, newRoot: Merkle.emptyRoot, path: proof.path)
        }
        if let proof = (try? InclusionProof.find(for: rr.name, in: records)) ?? nil {
            let countersignature = Countersignature(
                target: rr.name, key: key, signer: proof.head.signer, notBefore: 0, notAfter: 1, signature: [])
            if (try? proof.verify(countersignature, signerKey: key)) != nil {
                fatalError("an inclusion proof from the fuzzer verified under a key it does not have")
            }
        }
    }
}

func check(_ bytes: [UInt8]) {
    guard let message = try? DNSMessage(wire: bytes) else { return }
    checkLogRecords(message)
    guard let record = try? message.kmsRecord() ?? nil else { return }
    _ = try? Inquiry(record)
    _ = try? SignatureRequest(record)
    _ = try? KeyAnswer(record)
    _ = try? Unresolved(record)
    _ = try? CUGVerdict(record)
    if (try? record.verifySignature(by: key, signer: record.owner)) != nil {
        fatalError("a record from the fuzzer verified under a key it does not have")
    }
}

@main struct Main {
    static func main() { FuzzReplay.main("fuzz-kms-record", check) }
}
