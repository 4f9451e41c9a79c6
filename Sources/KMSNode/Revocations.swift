import DNSTransport
import DNSWire
import KMSCrypto
import KMSProtocol
import KMSSettings
import Synchronization

/// Which neighbours fetched which keys through this node: whom to tell when one is withdrawn.
/// Bounded: past `capacity` names, the oldest knowledge is dropped (those neighbours then learn
/// of a withdrawal only when their cache entry expires, as before revocations existed).
final class Subscribers: Sendable {
    private let table = Mutex<[DomainName: Set<DomainName>]>([:])
    let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    func note(_ target: DomainName, fetchedBy peer: DomainName) {
        table.withLock { table in
            if table[target] == nil, table.count >= capacity { table.trim(toAtMost: capacity / 2) }
            table[target, default: []].insert(peer)
        }
    }

    /// The neighbours to tell about `target`, forgotten once taken (they are told once).
    func take(_ target: DomainName) -> Set<DomainName> {
        table.withLock { $0.removeValue(forKey: target) ?? [] }
    }
}

extension KMSNode {
    /// A key of this zone was withdrawn (rotated or removed): tell every neighbour that fetched
    /// it through this node, in the background. `revocationsSent()` waits for them.
    func revoke(target: DomainName, key: PublicKey, except sender: DomainName? = nil) {
        let peers = subscribers.take(target).subtracting(sender.map { [$0] } ?? [])
        guard !peers.isEmpty else { return }
        let task = Task { [self] in
            for name in peers.sorted(by: { $0.text < $1.text }) {
                guard let peer = router.peer(named: name) else { continue }
                await send(Revocation(target: target, key: key, from: zone, nonce: .empty, time: Self.now()), to: peer)
            }
        }
        revocationTasks.withLock { $0.append(task) }
    }

    private func send(_ revocation: Revocation, to peer: Peer) async {
        var revocation = revocation
        guard let nonce = try? Nonce.random() else { return }
        revocation.nonce = nonce
        guard let record = try? revocation.record().signed(by: configuration.key) else { return }
        let query = DNSMessage.kmsQuery(id: 0, target: revocation.target, record: record)
        do {
            let reply = try await upstream.client.query(query, server: try peer.endpoint.socketAddress(), timeout: upstream.timeout)
            if reply.rcode != .noError {
                warnings.warning("a neighbour refused a revocation", metadata: [
                    "peer": "\(peer.name)", "target": "\(revocation.target)", "rcode": "\(reply.rcode)",
                    "reason": "\(reply.extendedErrors.first?.text ?? "")",
                ])
            }
        } catch {
            warnings.warning("a neighbour did not take a revocation; its cache entry expires on its own", metadata: [
                "peer": "\(peer.name)", "target": "\(revocation.target)",
            ])
        }
    }

    /// Waits until every revocation sent so far has been answered (or given up on).
    public func revocationsSent() async {
        while true {
            let tasks = revocationTasks.withLock { tasks -> [Task<Void, Never>] in
                defer { tasks.removeAll() }
                return tasks
            }
            if tasks.isEmpty { return }
            for task in tasks { await task.value }
        }
    }

    /// A `kms1:revoke` from the parent or a child: the key it names is withdrawn, so this node
    /// forgets what it cached of `target` (in memory and in its store) and tells the
    /// neighbours that fetched it through this node in turn.
    func answer(revocation record: KMSRecord, _ request: Request) -> Step {
        let revocation: Revocation
        switch parse(record, request, as: Revocation.init, target: \.target) {
        case .success(let parsed): revocation = parsed
        case .failure(let formatError): return formatError.step
        }
        switch authenticate(record, from: revocation.from, nonce: revocation.nonce, time: revocation.time, request) {
        case .success(.parent), .success(.child): break
        case .success(let other):
            return refuse(request, ExtendedDNSError(.prohibited, "only a neighbouring KMS revokes keys here, not \(other.name)"))
        case .failure(let refusal):
            return refusal.step(for: request)
        }
        cache.purge(target: revocation.target)
        replies.clear()
        store.forgetReceived(target: revocation.target) { [logger] error in
            if let error { logger.error("cannot forget a revoked countersignature", metadata: ["error": "\(error)"]) }
        }
        logger.notice("key revoked", metadata: ["target": "\(revocation.target)", "by": "\(revocation.from)"])
        revoke(target: revocation.target, key: revocation.key, except: revocation.from)
        return .reply(Reply(request.message.response(rcode: .noError, authoritative: false), answering: request.message))
    }
}
