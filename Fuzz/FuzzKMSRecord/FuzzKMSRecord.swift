import DNSWire
import FuzzReplay
import KMSCrypto
import KMSProtocol

/// A query carrying a KMS record, as a KMS receives one: the record and every parser of
/// PROTOCOL.md must refuse bad input with an error, never crash, and a signature check over
/// whatever parsed must simply fail.
let key = try! PrivateKey(ed25519Seed: Array(repeating: 7, count: 32)).publicKey

func check(_ bytes: [UInt8]) {
    guard let message = try? DNSMessage(wire: bytes), let record = try? message.kmsRecord() ?? nil else { return }
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
