public import DNSTransport
public import DNSWire
import Foundation
public import KMSClient
import KMSProtocol
public import Logging
public import NIOCore

/// The DNS server applications use (PROTOCOL.md section 6, the seed's figure 4).
///
/// Every query is forwarded upstream. A name that matches no CUG row gets exactly the upstream
/// answer. An A/AAAA query for a matching name gets, instead of the peer's real addresses, an
/// intercept address mapped to the peer and its KMS-verified key, or SERVFAIL with the reason
/// when the key cannot be fetched and verified. It never falls back to the real address.
public final class DNSProxy: DNSResponder {
    let upstream: SocketAddress
    let client: DNSClient
    let cug: CUGTable
    let pool: InterceptPool
    let poolV6: InterceptPool?
    let fetchers: [String: KeyFetcher]
    let timeout: TimeAmount
    let logger: Logger
    let metrics = ProxyMetrics()

    public init(
        upstream: SocketAddress, client: DNSClient, cug: CUGTable, pool: InterceptPool, poolV6: InterceptPool?,
        fetchers: [String: KeyFetcher], timeout: TimeAmount, logger: Logger
    ) {
        self.upstream = upstream
        self.client = client
        self.cug = cug
        self.pool = pool
        self.poolV6 = poolV6
        self.fetchers = fetchers
        self.timeout = timeout
        self.logger = logger
    }

    public func respond(to bytes: ByteBuffer, from client: SocketAddress, over transport: DNSTransportKind) -> DNSReply {
        guard bytes.readableBytes >= DNSMessage.headerSize,
            let flags = bytes.getInteger(at: bytes.readerIndex + 2, as: UInt8.self), flags & 0x80 == 0
        else { return .drop }
        guard let query = try? DNSMessage(wire: bytes.readableBytesView), query.questions.count == 1 else {
            var header = Header(id: bytes.getInteger(at: bytes.readerIndex, as: UInt16.self) ?? 0)
            header.isResponse = true
            header.rcode = .formatError
            return .reply(Reply(DNSMessage(header: header), udpLimit: 512))
        }
        return .later { [self] in Reply(await resolve(query), answering: query) }
    }

    /// Forwards, then decides: pass, encrypt, or refuse.
    func resolve(_ query: DNSMessage) async -> DNSMessage {
        let question = query.question!
        var upstreamAnswer: DNSMessage
        do {
            upstreamAnswer = try await client.query(query, server: upstream, timeout: timeout)
        } catch {
            return failure(query, ExtendedDNSError(.noReachableAuthority, "upstream \(upstream) did not answer: \(error)"))
        }
        upstreamAnswer.header.id = query.header.id

        guard let row = cug.match(question.name) else {
            metrics.passed.increment()
            logger.debug("passed: no CUG row matches", metadata: ["name": "\(question.name)"])
            return upstreamAnswer
        }
        guard question.type == .a || question.type == .aaaa else {
            // Not an address query: pass it on, but never with an address of a group peer.
            upstreamAnswer.answers.removeAll { $0.type == .a || $0.type == .aaaa }
            upstreamAnswer.additionals.removeAll { $0.type == .a || $0.type == .aaaa }
            return upstreamAnswer
        }
        let addresses = upstreamAnswer.answers.compactMap { record -> (IPAddress, UInt32)? in
            switch record.data {
            case .a(let bytes), .aaaa(let bytes): IPAddress(bytes: bytes).map { ($0, record.ttl) }
            default: nil
            }
        }
        guard upstreamAnswer.rcode == .noError, !addresses.isEmpty else {
            // NXDOMAIN or no address: nothing to protect, nothing to leak.
            return upstreamAnswer
        }
        guard let fetcher = fetchers[row.settings.identity] else {
            return refuse(query, row, "identity \(row.settings.identity) is not configured")
        }
        let key: FetchResult
        do {
            key = try await fetcher.fetch(question.name)
        } catch {
            return refuse(query, row, "no verified key for \(question.name): \(error.message)")
        }
        guard let pool = question.type == .a ? pool : poolV6 else {
            // An AAAA query with no IPv6 pool: no data, never the real address.
            var empty = query.response(rcode: .noError, authoritative: false)
            empty.header.recursionAvailable = true
            return empty
        }
        let now = Date().timeIntervalSince1970
        guard let mapping = pool.assign(
            peer: question.name.lowercased, addresses: addresses.map(\.0), key: key.key, settings: row.settings, now: now)
        else {
            return refuse(query, row, "intercept address pool exhausted (\(pool.capacity) addresses in use)")
        }
        metrics.encrypted.increment()
        logger.info(
            "encrypted: matched CUG row",
            metadata: [
                "name": "\(question.name)", "row": "\(row.line) (\(row.pattern))", "intercept": "\(mapping.intercept)",
                "peer": "\(addresses.map { "\($0.0)" }.joined(separator: ","))", "path": "\(row.settings)",
            ])
        var answer = query.response(rcode: .noError, authoritative: false)
        answer.header.recursionAvailable = true
        let ttl = UInt32(max(0, min(Double(addresses.map(\.1).min() ?? 0), mapping.expiresAt - now - 1)))
        answer.answers = [ResourceRecord(name: question.name, ttl: ttl, data: mapping.intercept.rdata)]
        return answer
    }

    private func refuse(_ query: DNSMessage, _ row: CUGTable.Row, _ reason: String) -> DNSMessage {
        metrics.refused.increment()
        logger.warning("refused: CUG peer without a usable path", metadata: ["name": "\(query.question!.name)", "row": "\(row.line)", "reason": "\(reason)"])
        return failure(query, ExtendedDNSError(.dnssecBogus, "\(query.question!.name) is a CUG peer (row \(row.line)): \(reason)"))
    }

    private func failure(_ query: DNSMessage, _ error: ExtendedDNSError) -> DNSMessage {
        var message = query.response(rcode: .serverFailure, authoritative: false)
        message.header.recursionAvailable = true
        if message.edns != nil { message.addExtendedError(error) }
        return message
    }
}
