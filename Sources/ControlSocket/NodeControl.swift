/// The messages of a KMS node's control socket, one JSON object a line each way. They live
/// here, with the socket, so a client (`kms register`) needs neither the node nor its
/// configuration types.
///
///     {"op":"register","name":"hostc.b.a.xx.","key":"ed25519:MCow...","addresses":["127.0.0.13"]}
///     {"ok":true,"message":"registered hostc.b.a.xx."}
///
/// Ops: `register` (name, key, addresses), `register-batch` (hosts: many at once, stored in one
/// transaction, all or none), `remove` (name), `hosts`, `status`, `flush` (name, or none for all),
/// `reload`, `reload-policy`. `kms ctl` speaks them.
public enum NodeControl {
    public struct Request: Codable, Sendable {
        public var op: String
        public var name: String?
        public var key: String?
        public var addresses: [String]?
        /// `register-batch`: the hosts, in order; an error names the index of the first bad one.
        public var hosts: [Host]?

        public init(op: String, name: String? = nil, key: String? = nil, addresses: [String]? = nil, hosts: [Host]? = nil) {
            self.op = op
            self.name = name
            self.key = key
            self.addresses = addresses
            self.hosts = hosts
        }
    }

    /// One host of a `register-batch`.
    public struct Host: Codable, Sendable {
        public var name: String
        public var key: String
        public var addresses: [String]

        public init(name: String, key: String, addresses: [String]) {
            self.name = name
            self.key = key
            self.addresses = addresses
        }
    }

    public struct Response: Codable, Sendable {
        public var ok: Bool
        public var message: String
        public var hosts: [String]?
        /// `register-batch` refused: the index of the host that was wrong.
        public var index: Int?
        /// `status`: name and value, in order.
        public var fields: [[String]]?

        public init(ok: Bool, message: String, hosts: [String]? = nil, index: Int? = nil, fields: [[String]]? = nil) {
            self.ok = ok
            self.message = message
            self.hosts = hosts
            self.index = index
            self.fields = fields
        }
    }
}
