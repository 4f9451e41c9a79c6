internal import COpenSSL

/// HMAC-SHA256 (RFC 2104) through OpenSSL: for values a server makes and later checks itself
/// (DNS server cookies), never for anything another party verifies.
public enum MAC {
    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length = 0
        let ok = key.withUnsafeBytes { keyBytes in
            data.withUnsafeBytes { dataBytes in
                EVP_Q_mac(
                    nil, "HMAC", nil, "SHA256", nil, keyBytes.baseAddress, keyBytes.count, dataBytes.baseAddress,
                    dataBytes.count, &out, out.count, &length) != nil
            }
        }
        precondition(ok && length == 32, "HMAC-SHA256 failed in OpenSSL")
        return out
    }
}
