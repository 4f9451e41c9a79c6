import Foundation

/// The host's resolvers, as /etc/resolv.conf names them (resolv.conf(5)): `kms fetch --via-dns`
/// asks the first, kms-proxy sends every name outside the hierarchy to them.
public enum ResolvConf {
    /// The nameservers of a resolv.conf (port 53), in order, leaving out `excluding` (a proxy
    /// that is the host's resolver itself: asking itself would loop). A link-local server keeps
    /// its interface (`fe80::1%eth0`): without it, it cannot be reached.
    public static func nameservers(from path: String = "/etc/resolv.conf", excluding: [Endpoint] = []) -> [Endpoint] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line -> Endpoint? in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver", let (address, scope) = Endpoint.scopedAddress(words[1]) else { return nil }
            let endpoint = Endpoint(address: address, port: 53, scope: scope)
            return excluding.contains(endpoint) ? nil : endpoint
        }
    }
}
