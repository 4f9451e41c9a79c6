import DNSTransport
import DNSWire
import KMSProtocol
import KMSSettings
import NIOCore

/// What a parent or child KMS said, after its signature and the nonce echo were checked.
enum UpstreamAnswer: Sendable {
    case key(KeyAnswer)
    case unresolved
    /// An error reply (REFUSED, SERVFAIL, ...) with its extended errors, passed on as it came.
    case error(RCode, [ExtendedDNSError])
    /// Nothing usable came back: silence, or a reply that failed verification.
    case failed(ExtendedDNSError)
}

/// Sends a signed KMS1 query to a neighbouring KMS and checks the reply: the responder must be
/// that KMS, its signature must verify with the key we hold for it, and the nonce must be ours.
struct Upstream: Sendable {
    let client: DNSClient
    let timeout: TimeAmount

    func ask(
        _ peer: Peer, target: DomainName, record: KMSRecord, nonce: Nonce, trace: Bool
    ) async -> (UpstreamAnswer, hops: [ResourceRecord]) {
        var query = DNSMessage.kmsQuery(id: 0, target: target, record: record)
        if trace { query.edns?.options.append(HopTrace.option) }
        let server = SocketAddress.from(peer.endpoint)
        let reply: DNSMessage
        do {
            reply = try await client.query(query, server: server, timeout: timeout)
        } catch let error as DNSClientError where error.code == .timeout {
            return (.failed(ExtendedDNSError(
                .noReachableAuthority,
                "\(peer.name) (\(peer.endpoint)) did not answer within \(timeout.nanoseconds / 1_000_000) ms")), [])
        } catch {
            return (.failed(ExtendedDNSError(.networkError, "\(peer.name) (\(peer.endpoint)) unreachable: \(error)")), [])
        }
        let hops = HopTrace.records(in: reply)
        let check = ReplyCheck(responder: peer.name, responderKey: peer.key, target: target, nonce: nonce)
        do {
            switch reply.rcode {
            case .noError:
                guard let record = try reply.kmsRecord(), record.tag == .answer || record.tag == .countersignature else {
                    return (.failed(ExtendedDNSError(.invalidData, "\(peer.name) answered without a key record")), hops)
                }
                return (.key(try check.verify(answer: record)), hops)
            case .nameError:
                if let record = try reply.kmsRecord(), record.tag == .unresolved {
                    _ = try check.verify(unresolved: record)
                    return (.unresolved, hops)
                }
                return (.error(reply.rcode, reply.extendedErrors), hops)
            default:
                return (.error(reply.rcode, reply.extendedErrors), hops)
            }
        } catch {
            return (.failed(ExtendedDNSError(.dnssecBogus, "reply from \(peer.name) rejected: \(error)")), hops)
        }
    }
}

extension SocketAddress {
    static func from(_ endpoint: Endpoint) -> SocketAddress {
        // An Endpoint holds a parsed IP address, so this cannot fail.
        try! SocketAddress(ipAddress: endpoint.address.description, port: endpoint.port)
    }
}
