internal import COpenSSL

/// Bytes from OpenSSL's CSPRNG, for nonces and query IDs.
public enum SecureRandom {
    public static func bytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else {
            throw CryptoError(.randomFailed, "RAND_bytes failed")
        }
        return out
    }
}
