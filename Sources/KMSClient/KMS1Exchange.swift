public import DNSTransport
public import DNSWire
public import KMSProtocol
public import KMSSettings
public import NIOCore
import Synchronization

/// One KMS1 question to one KMS and its checked reply: the exchange every asker shares — the
/// host's `KeyFetcher`, and a KMS node asking its parent or a child (inquiries and sigreqs).
///
/// It sends a signed record about `target`, over UDP with a DNS cookie (so a KMS that checks
/// cookies knows the address is real) and the TCP retry on TC=1 (or over TCP from the start,
/// for a traced request whose notes will not fit), then reads the reply:
///
/// - NOERROR must carry the record `expecting` (`kms1:answer` or `kms1:countersig`), and it
///   must pass `accept`: by default the hop checks (`ReplyCheck`: signed by the KMS asked,
///   echoing the nonce, about `target`); the host passes its `AnswerVerification`, which adds
///   the countersignature checks. A node checks the countersignature after, by its own
///   `CountersignaturePolicy`, because what it holds keys for differs.
/// - NXDOMAIN must carry a `kms1:unresolved` that passes the hop checks.
/// - Any other rcode is passed on with its extended errors.
public struct KMS1Exchange: Sendable {
    public enum Outcome: Sendable {
        /// The key, with the inclusion proof the reply carried (asked for with `audit`), not
        /// yet checked: whoever holds the signer's key checks it.
        case key(KeyAnswer, proof: InclusionProof?)
        case unresolved
        case error(RCode, [ExtendedDNSError])
        /// Nothing came back within the time-out.
        case timeout
        /// The question could not be sent, or the connection failed.
        case unreachable(String)
        /// A reply came back and was discarded: the reason.
        case rejected(String)
    }

    public let client: DNSClient
    public let timeout: TimeAmount

    public init(client: DNSClient, timeout: TimeAmount) {
        self.client = client
        self.timeout = timeout
    }

    /// A signed request and the nonce it carries (the reply must echo it).
    public typealias Signed = (record: KMSRecord, nonce: Nonce)

    /// Asks `kms`, waiting `wait` (default: the exchange's time-out) and telling it so
    /// (`TimeBudget`); returns the outcome and the reply's hop-trace records (if asked for).
    ///
    /// Over UDP a datagram may be lost, and one loss would cost the whole time-out. So when
    /// no reply has come after a quarter of the wait, and again after half, the question is
    /// asked again, as every stub resolver asks again: `again` signs a new request, with a
    /// fresh nonce (PROTOCOL.md refuses a nonce seen before, so the same bytes would be
    /// refused as a replay if the first did arrive). The first reply to any of them that is
    /// not silence is the outcome; a KMS that is slow rather than unreachable costs a verify
    /// and a signature per extra request, and its upstream work is shared (`Coalescer`).
    /// Over TCP, which recovers its own losses, or without `again`, it asks once. `requests`
    /// says how many were sent by the time the outcome was known (more than one: the network
    /// lost something, or the KMS was slow).
    public func ask(
        _ kms: Peer, target: DomainName, record: KMSRecord, nonce: Nonce, expecting tag: RecordTag,
        trace: Bool = false, overTCP: Bool = false, wait: TimeAmount? = nil, audit: Bool = false,
        again: (@Sendable () -> Signed?)?,
        accept: (@Sendable (KMSRecord, Nonce) throws -> KeyAnswer)? = nil
    ) async -> (outcome: Outcome, hops: [ResourceRecord], requests: Int) {
        let timeout = wait ?? self.timeout
        // Over UDP the copies go from the same socket with the same DNS ID (`DNSClient`'s
        // `resendAfter`): no task or timer of their own, and a reply to any of them is taken,
        // checked against the nonce it echoes.
        let deadline = NIODeadline.now() + timeout
        let nonces = Mutex([nonce])
        var copy: (@Sendable () -> DNSMessage?)?
        if !overTCP, let again {
            copy = { @Sendable () -> DNSMessage? in
                let left = deadline - .now()
                guard left > .zero, let signed = again() else { return nil }
                nonces.withLock { $0.append(signed.nonce) }
                return Self.query(target: target, record: signed.record, trace: trace, audit: audit, waiting: left)
            }
        }
        let outcome = await once(
            kms, target: target, signed: (record, nonce), expecting: tag, trace: trace, overTCP: overTCP, timeout: timeout, audit: audit,
            accept: accept, resendAfter: copy == nil ? [] : (1..<Self.attempts).map { Self.askedAgain($0, waiting: timeout) }, copy: copy,
            sent: { nonces.withLock { $0 } })
        return (outcome.outcome, outcome.hops, nonces.withLock { $0.count })
    }

    /// How many requests a UDP exchange may send: the first, then one after a quarter and one
    /// after half of the wait without a reply.
    public static let attempts = 3

    /// When request `attempt` (1 for the first one asked again) goes out, into a wait of `wait`.
    public static func askedAgain(_ attempt: Int, waiting wait: TimeAmount) -> TimeAmount {
        .nanoseconds(wait.nanoseconds * Int64(attempt) / Int64(attempts + 1))
    }

    /// The query that carries `record`, with the options the request asks for and the time
    /// its sender waits (`TimeBudget`).
    static func query(target: DomainName, record: KMSRecord, trace: Bool, audit: Bool, waiting: TimeAmount) -> DNSMessage {
        var query = DNSMessage.kmsQuery(id: 0, target: target, record: record)
        if trace { query.edns?.options.append(HopTrace.option) }
        if audit { query.edns?.options.append(AuditRequest.option) }
        query.edns?.options.append(TimeBudget.option(milliseconds: UInt32(clamping: waiting.nanoseconds / 1_000_000)))
        return query
    }

    /// One request (and over UDP the copies `copy` makes, `resendAfter`), and its checked
    /// reply: the nonce it must echo is whichever of `sent` it does echo.
    private func once(
        _ kms: Peer, target: DomainName, signed: Signed, expecting tag: RecordTag, trace: Bool, overTCP: Bool,
        timeout: TimeAmount, audit: Bool, accept: (@Sendable (KMSRecord, Nonce) throws -> KeyAnswer)?,
        resendAfter: [TimeAmount], copy: (@Sendable () -> DNSMessage?)?, sent: () -> [Nonce]
    ) async -> (outcome: Outcome, hops: [ResourceRecord]) {
        let query = Self.query(target: target, record: signed.record, trace: trace, audit: audit, waiting: timeout)
        let reply: DNSMessage
        do {
            let server = try kms.endpoint.socketAddress()
            reply = overTCP
                ? try await client.queryOverTCP(query, server: server, timeout: timeout)
                : try await client.query(query, server: server, timeout: timeout, cookie: true, resendAfter: resendAfter, copy: copy)
        } catch let error as DNSClientError where error.code == .timeout {
            return (.timeout, [])
        } catch let error as DNSClientError {
            return (.unreachable(error.reason), [])
        } catch {
            return (.unreachable("\(error)"), [])
        }
        let hops = HopTrace.records(in: reply)
        let nonces = sent()
        // The request this reply answers, by the nonce it echoes; none: the first's, which the
        // check then finds missing.
        func answered(_ record: KMSRecord) -> Nonce {
            let echoed = record.tag.fieldNames.contains("nonce") ? record.value("nonce") : ""
            return nonces.first { $0.description == echoed } ?? signed.nonce
        }
        do {
            switch reply.rcode {
            case .noError:
                guard let record = try reply.kmsRecord(), record.tag == tag else {
                    return (.rejected("the reply carries no \(tag) record"), hops)
                }
                let nonce = answered(record)
                let check = ReplyCheck(responder: kms.name, responderKey: kms.key, target: target, nonce: nonce)
                let answer = try accept.map { try $0(record, nonce) } ?? check.verify(answer: record)
                let proof = audit ? try InclusionProof.find(for: answer.target, in: reply.additionals) : nil
                return (.key(answer, proof: proof), hops)
            case .nameError:
                guard let record = try reply.kmsRecord(), record.tag == .unresolved else {
                    return (.error(reply.rcode, reply.extendedErrors), hops)
                }
                let check = ReplyCheck(responder: kms.name, responderKey: kms.key, target: target, nonce: answered(record))
                _ = try check.verify(unresolved: record)
                return (.unresolved, hops)
            default:
                return (.error(reply.rcode, reply.extendedErrors), hops)
            }
        } catch {
            return (.rejected("\(error)"), hops)
        }
    }
}
