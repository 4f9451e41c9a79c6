import MetricsHTTP
public import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSProtocol
import KMSSettings
import LogFormat
import Logging
import NIOCore
import NIOPosix

/// The DNS server applications use (PROTOCOL.md section 6, the seed's figure 4).
///
/// Every query is forwarded upstream. A name that matches no CUG row gets exactly the upstream
/// answer. An A/AAAA query for a matching name gets, instead of the peer's real addresses, an
/// intercept address mapped to the peer and its KMS-verified key, or SERVFAIL with the reason
/// when the key cannot be fetched and verified. It never falls back to the real address.
public final class DNSProxy: DNSResponder {
    /// Split DNS: which server each name goes to.
    let forwarding: Forwarding
    /// Answers for names outside the hierarchy (nil: none kept).
    let cache: AnswerCache?
    let client: DNSClient
    /// The CUG table in force; replaced whole on reload (SIGHUP).
    let cug: Swappable<CUGTable>
    let pool: InterceptPool
    let poolV6: InterceptPool?
    let fetchers: [Identity: KeyFetcher]
    let timeout: TimeAmount
    /// Who may query (`dns-allow`, or this host and its networks).
    let allowedClients: AllowedClients
    let logger: Logger
    /// Lines a packet or a connection from outside can cause, at most 5 a second each.
    let warnings: LogLimiter
    let metrics = ProxyMetrics()
    /// In `policy server` mode: the home KMS whose signed verdicts decide.
    let verdictSource: Peer?
    /// Kernel diversion, when `kernel` rows are enabled.
    let kernel: KernelDiversion?
    /// Where mappings are kept across restarts (`store`), if anywhere.
    let store: ProxyStore?

    init(
        forwarding: Forwarding, cacheSize: Int = 10_000, client: DNSClient, cug: CUGTable, pool: InterceptPool,
        poolV6: InterceptPool?, fetchers: [Identity: KeyFetcher], timeout: TimeAmount, logger: Logger, verdictSource: Peer? = nil,
        kernel: KernelDiversion? = nil, store: ProxyStore? = nil, allowedClients: AllowedClients = AllowedClients()
    ) {
        self.allowedClients = allowedClients
        self.store = store
        self.verdictSource = verdictSource
        self.kernel = kernel
        self.forwarding = forwarding
        self.cache = cacheSize > 0 ? AnswerCache(capacity: cacheSize) : nil
        self.client = client
        self.cug = Swappable(cug)
        self.pool = pool
        self.poolV6 = poolV6
        self.fetchers = fetchers
        self.timeout = timeout
        self.logger = logger
        warnings = LogLimiter(logger)
    }

    /// Admission (size, QR, decoding, opcode, one question) is the transport's, as for the
    /// KMS node; every admitted query needs the upstream, so the answer always comes later.
    public func respond(to request: DNSRequest) -> DNSReply {
        let query = request.message
        // Only the networks `dns-allow` names (by default this host's own) are served.
        guard let client = request.client.ip, allowedClients.allows(client) else {
            let who = request.client.ip.map { "\($0)" } ?? "this address"
            metrics.clientsRefused.increment()
            warnings.notice("refused a client outside dns-allow", metadata: ["client": "\(who)"])
            return .reply(Replies.error(
                to: query, .refused, ExtendedDNSError(.prohibited, "\(who) may not query this proxy (dns-allow)"), querySize: request.size))
        }
        return .later { [self] in
            let start = ContinuousClock.now
            let answer = await resolve(query)
            metrics.answerTime.record(ContinuousClock.now - start)
            return Reply(answer, answering: query)
        }
    }

    /// Forwards, then decides: pass, encrypt, or refuse.
    ///
    ///   1. route the name (split DNS): the hierarchy's zones to the home KMS, with a fresh
    ///      verdict nonce in `policy server` mode; other names to their zone's servers or the
    ///      resolvers, from the answer cache when it holds them
    ///   2. decide: the CUG table (or the KMS's verdict) says normal, encrypted or refused
    ///   3. for an encrypted address query: fetch and verify the key, map an intercept address
    func resolve(_ query: DNSMessage) async -> DNSMessage {
        let question = query.question!
        let route = forwarding.route(question.name)
        var upstreamAnswer: DNSMessage
        var nonce = Nonce.empty
        if route.isHierarchy {
            // policy server: a fresh nonce per address query binds the home KMS's verdict to it.
            var forwarded = query
            if verdictSource != nil, question.type.isAddress {
                guard let fresh = try? Nonce.random() else {
                    return failure(query, ExtendedDNSError(.other, "cannot draw a nonce for the CUG verdict"))
                }
                nonce = fresh
                if forwarded.edns == nil { forwarded.edns = EDNS() }
                forwarded.edns!.options.removeAll { $0.code == VerdictNonce.optionCode }
                forwarded.edns!.options.append(VerdictNonce.option(nonce))
            }
            switch await ask(route, forwarded) {
            case .success(let answer): upstreamAnswer = answer
            case .failure(let error): return failure(query, error)
            }
        } else if let cached = cache?.answer(to: query, now: Date().timeIntervalSince1970) {
            upstreamAnswer = cached
        } else {
            switch await ask(route, query) {
            case .success(let answer):
                upstreamAnswer = answer
                cache?.store(answer, for: query, now: Date().timeIntervalSince1970)
            case .failure(let error): return failure(query, error)
            }
        }
        upstreamAnswer.header.id = query.header.id
        if query.edns == nil { upstreamAnswer.edns = nil }
        let row: CUGTable.Row
        switch decide(question, answer: upstreamAnswer, nonce: nonce, inHierarchy: route.isHierarchy) {
        case .normal(let why):
            metrics.passed.increment()
            logger.debug("passed: \(why)", metadata: ["name": "\(question.name)"])
            if verdictSource != nil, route.isHierarchy, !question.type.isAddress {
                // The home KMS gives a verdict only with an address answer: an address in an
                // ANY answer (or any other) has had none, and could be a group peer's real one.
                upstreamAnswer.removeWaysToConnect()
            }
            return upstreamAnswer
        case .encrypted(let matched):
            row = matched
        case .refused(let reason):
            metrics.refused.increment()
            warnings.warning("refused: no trustworthy CUG verdict", metadata: ["name": "\(question.name)", "reason": "\(reason)"])
            return failure(query, ExtendedDNSError(.dnssecBogus, "\(question.name): \(reason)"))
        }
        guard question.type.isAddress else {
            // Not an address query: pass it on, but never with an address of a group peer,
            // nor a service binding (HTTPS/SVCB) whose address hints a browser may connect to
            // in clear, or whose QUIC the encrypted path does not carry: NODATA for those.
            upstreamAnswer.removeWaysToConnect()
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
        let fetching = ContinuousClock.now
        defer { metrics.keyFetchTime.record(ContinuousClock.now - fetching) }
        do {
            key = try await fetcher.fetch(question.name)
        } catch {
            return refuse(query, row, "no verified key for \(question.name): \(error.message)")
        }
        if row.settings.pathProtocol == .kernel {
            return await divert(query, row: row, answer: upstreamAnswer, addresses: addresses.map(\.0), key: key)
        }
        guard let pool = question.type == .a ? pool : poolV6 else {
            // An AAAA query with no IPv6 pool: no data, never the real address.
            var empty = query.response(rcode: .noError, authoritative: false)
            empty.header.recursionAvailable = true
            return empty
        }
        let now = Date().timeIntervalSince1970
        guard let mapping = pool.assign(
            peer: question.name.lowercased, addresses: addresses.map(\.0), key: key.key, settings: row.settings, now: now,
            keyNotAfter: key.countersignature.notAfter)
        else {
            return refuse(query, row, "intercept address pool exhausted (\(pool.capacity) addresses in use)")
        }
        // Recorded before the answer leaves: a restart never gives this address to another peer.
        do { try await store?.save(mapping, kind: .intercept, address: mapping.intercept, expiresAt: mapping.expiresAt) } catch {
            return refuse(query, row, "cannot record the mapping: \(error)")
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

    /// First embodiment: the application gets the real address (A and AAAA); the kernel diverts
    /// TCP to it, IPv4 or IPv6, into the tunnel.
    /// `nft` runs as a process that is waited for: on NIO's blocking-work thread pool, never on
    /// an event loop or a cooperative thread.
    private func divert(_ query: DNSMessage, row: CUGTable.Row, answer: DNSMessage, addresses: [IPAddress], key: FetchResult) async -> DNSMessage {
        guard let kernel else { return refuse(query, row, "kernel diversion is not enabled (divert-port)") }
        let question = query.question!
        var answer = answer
        answer.additionals.removeAll { $0.type.isAddress || $0.type == .txt }
        guard !addresses.isEmpty else { return answer }
        // The peer's addresses of the other family are diverted too, so that no connection to
        // it leaves in clear, whichever address the application uses (a literal included).
        // Asked of the hierarchy once; while they are diverted, the next answers reuse them.
        let otherIsIPv6 = question.type == .a
        var diverted = addresses
        let known = kernel.addresses(of: question.name.lowercased).filter { $0.isIPv6 == otherIsIPv6 }
        var other = DNSMessage.query(id: 0, name: question.name, type: otherIsIPv6 ? .aaaa : .a)
        other.header.recursionDesired = true
        if !known.isEmpty {
            diverted += known
        } else if case .success(let reply) = await ask(forwarding.route(question.name), other), reply.rcode == .noError {
            diverted += reply.answers.compactMap { record -> IPAddress? in
                switch record.data {
                case .a(let bytes), .aaaa(let bytes): IPAddress(bytes: bytes)
                default: nil
                }
            }
        }
        let now = Date().timeIntervalSince1970
        let mapping = Mapping(
            intercept: addresses[0], peer: question.name.lowercased, peerAddresses: diverted, key: key.key, settings: row.settings,
            expiresAt: now + pool.lifetime, liveConnections: 0, keyNotAfter: key.countersignature.notAfter)
        let lifetime = pool.lifetime
        do {
            let expiries = try await NIOThreadPool.singleton.runIfActive { try kernel.divert(mapping, lifetime: lifetime, now: now) }
            for (address, expiresAt) in expiries {
                try await store?.save(mapping, kind: .kernel, address: address, expiresAt: expiresAt)
            }
        } catch {
            return refuse(query, row, "cannot divert \(addresses.map(\.description).joined(separator: ",")): \(error)")
        }
        for index in answer.answers.indices { answer.answers[index].ttl = min(answer.answers[index].ttl, UInt32(pool.lifetime)) }
        metrics.encrypted.increment()
        logger.info(
            "encrypted: matched CUG row, kernel diversion",
            metadata: ["name": "\(question.name)", "row": "\(row.line) (\(row.pattern))", "peer": "\(addresses.map(\.description).joined(separator: ","))", "path": "\(row.settings)"])
        return answer
    }

    enum Decision {
        case normal(String)
        case encrypted(CUGTable.Row)
        case refused(String)
    }

    /// The CUG verdict: from this proxy's table, or (policy server) from the home KMS's signed
    /// `kms1:cug` record, which must verify and echo `nonce`, the one this proxy put in its
    /// query, or the name is refused (fail closed).
    func decide(_ question: Question, answer: DNSMessage, nonce: Nonce, inHierarchy: Bool = true) -> Decision {
        guard let home = verdictSource else {
            return cug.value.match(question.name).map(Decision.encrypted) ?? .normal("no CUG row matches")
        }
        // The home KMS decides for the names it is asked about: those of the hierarchy. Others
        // (www.example.com, through the resolvers) can have no verdict and no KMS-vouched key.
        guard inHierarchy else { return .normal("outside the KMS hierarchy") }
        guard question.type.isAddress else { return .normal("not an address query") }
        guard answer.rcode == .noError, !answer.answers.isEmpty else { return .normal("no address to protect") }
        let verdict: CUGVerdict
        do {
            guard let record = try answer.kmsRecord(), record.tag == .cug else {
                return .refused("the home KMS sent no kms1:cug verdict (policy server)")
            }
            verdict = try CUGVerdict(record)
            guard verdict.from == home.name else {
                return .refused("verdict signed as \(verdict.from), not the home KMS \(home.name)")
            }
            try record.verifySignature(by: home.key, signer: home.name)
        } catch {
            return .refused("CUG verdict rejected: \(error)")
        }
        guard verdict.target == question.name.lowercased else { return .refused("verdict is for \(verdict.target)") }
        guard !nonce.isEmpty, verdict.nonce == nonce else {
            return .refused("the verdict is not bound to this query (its nonce is not the one sent; decided for client \(verdict.client))")
        }
        let now = UnixTime(Date().timeIntervalSince1970)
        guard abs(now - verdict.time) <= 300 else { return .refused("stale CUG verdict (time \(verdict.time), now \(now))") }
        guard let path = verdict.path else { return .normal("the home KMS's verdict is normal") }
        guard path.pathProtocol == .tls || kernel != nil else {
            return .refused("the verdict asks for \(path.pathProtocol.rawValue), which this proxy does not carry")
        }
        guard fetchers[path.identity] != nil else {
            return .refused("the verdict names identity \(path.identity), which this proxy does not have")
        }
        return .encrypted(CUGTable.Row(pattern: .exact(verdict.target), settings: path, line: 0))
    }

    /// Asks the route's servers in turn until one answers (RD and EDNS as the application sent
    /// them; the DO, AD and CD bits pass through). All silent: the reason, for SERVFAIL.
    private enum Asked {
        case success(DNSMessage)
        case failure(ExtendedDNSError)
    }

    /// The servers of a route are asked one after another, each `stagger` after the one before
    /// or at once when the one before has failed (refused, or a reply that does not decode),
    /// and the first answer wins; the others are cancelled. All within `timeout`. Asked strictly
    /// in turn, a silent first resolver cost each query the whole time-out (5 s), which is as
    /// long as a stub waits (glibc's default), so the stub gave up and asked again before the
    /// second resolver was ever asked, and no name resolved at all.
    private func ask(_ route: Forwarding.Route, _ query: DNSMessage) async -> Asked {
        guard !route.servers.isEmpty else {
            return .failure(ExtendedDNSError(.notReady, "no resolver for names outside the KMS hierarchy (set resolver in the proxy configuration)"))
        }
        let servers = route.servers
        let deadline = NIODeadline.now() + timeout
        let stagger = Self.stagger(timeout: timeout, servers: servers.count)
        enum Attempt: Sendable {
            case answered(DNSMessage)
            case failed(Int, String)
            case waited
        }
        let outcome: Asked = await withTaskGroup(of: Attempt.self) { group in
            var next = 0
            var running = 0
            var reasons = [String?](repeating: nil, count: servers.count)
            func launch() {
                let index = next
                next += 1
                running += 1
                let server = servers[index]
                let left = max(.milliseconds(1), deadline - NIODeadline.now())
                group.addTask { [client] in
                    do {
                        let address = try server.socketAddress()
                        // A lost datagram costs a third of the wait, not all of it.
                        return .answered(try await client.query(query, server: address, timeout: left, resendAfter: DNSClient.steps(of: left, attempts: 3)))
                    } catch let error as DNSClientError {
                        return .failed(index, "\(server) \(error.code == .timeout ? "did not answer" : "unreachable"): \(error.reason)")
                    } catch {
                        return .failed(index, "\(server): \(error)")
                    }
                }
                if next < servers.count {
                    group.addTask {
                        try? await Task.sleep(for: stagger)
                        return .waited
                    }
                }
            }
            launch()
            while let attempt = await group.next() {
                switch attempt {
                case .answered(let answer):
                    group.cancelAll()
                    return .success(answer)
                case .failed(let index, let reason):
                    running -= 1
                    reasons[index] = reason
                    if next < servers.count {
                        launch()
                    } else if running == 0 {
                        group.cancelAll()
                        let said = reasons.compactMap { $0 }.joined(separator: "; ")
                        return .failure(ExtendedDNSError(.noReachableAuthority, "\(route.label): \(said)"))
                    }
                case .waited:
                    if next < servers.count, !Task.isCancelled { launch() }
                }
            }
            return .failure(ExtendedDNSError(.noReachableAuthority, "\(route.label): no server answered"))
        }
        if case .failure(let error) = outcome {
            warnings.warning("upstream failed", metadata: ["route": "\(route.label)", "reason": "\(error.text)"])
        }
        return outcome
    }

    /// How long the proxy waits for one server before it asks the next as well: a second, or
    /// less when the time-out would not leave every server a share.
    static func stagger(timeout: TimeAmount, servers: Int) -> Duration {
        .nanoseconds(min(1_000_000_000, timeout.nanoseconds / Int64(max(1, servers))))
    }

    private func refuse(_ query: DNSMessage, _ row: CUGTable.Row, _ reason: String) -> DNSMessage {
        metrics.refused.increment()
        warnings.warning("refused: CUG peer without a usable path", metadata: ["name": "\(query.question!.name)", "row": "\(row.line)", "reason": "\(reason)"])
        return failure(query, ExtendedDNSError(.dnssecBogus, "\(query.question!.name) is a CUG peer (row \(row.line)): \(reason)"))
    }

    private func failure(_ query: DNSMessage, _ error: ExtendedDNSError) -> DNSMessage {
        var message = query.response(rcode: .serverFailure, authoritative: false)
        message.header.recursionAvailable = true
        if message.edns != nil { message.addExtendedError(error) }
        return message
    }
}

extension DNSMessage {
    /// Drops every A, AAAA, SVCB and HTTPS record from the answer and additional sections.
    fileprivate mutating func removeWaysToConnect() {
        answers.removeAll { $0.type.leadsToAnAddress }
        additionals.removeAll { $0.type.leadsToAnAddress }
    }
}
