internal import COpenSSL

/// SHA-256 through OpenSSL: the hash of the transparency log's Merkle tree (RFC 9162 section 2.1).
public enum Digest {
    public static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = data.withUnsafeBytes { bytes in
            EVP_Digest(bytes.baseAddress, bytes.count, &out, &length, EVP_sha256(), nil) == 1
        }
        precondition(ok && length == 32, "SHA-256 failed in OpenSSL")
        return out
    }
}
