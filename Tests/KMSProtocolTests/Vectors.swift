import Foundation

/// `../shared/vectors/kms1-vectors.json`, the fixed keys and signature inputs every
/// implementation must reproduce. It lives beside the project (CI's clean clone has it there);
/// `COUNTERSIGN_VECTORS` may point elsewhere.
struct Vectors: Decodable {
    struct Inquiry: Decodable {
        let owner: String
        let strings_before_sig: [String]
        let signature_input_hex: String
        let sig_field: String
    }

    struct Countersignature: Decodable {
        let target: String
        let key: String
        let signer: String
        let not_before: Int64
        let not_after: Int64
        let signature_input_hex: String
        let countersig_field: String
    }

    let host_ed25519_seed_hex: String
    let host_public_key_field: String
    let signer_ed25519_seed_hex: String
    let signer_public_key_field: String
    let hostb_p256_scalar_hex: String
    let hostb_public_key_field: String
    let inquiry: Inquiry
    let countersignature: Countersignature

    static func load() throws -> Vectors {
        let path =
            ProcessInfo.processInfo.environment["COUNTERSIGN_VECTORS"]
            ?? URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/vectors/kms1-vectors.json").path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VectorsMissing(path: path)
        }
        return try JSONDecoder().decode(Vectors.self, from: data)
    }

    struct VectorsMissing: Error, CustomStringConvertible {
        let path: String
        var description: String { "test vectors not found at \(path) (set COUNTERSIGN_VECTORS)" }
    }
}

func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
