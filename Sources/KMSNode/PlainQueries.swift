import DNSTransport
import DNSWire
import KMSProtocol
import KMSSettings
import NIOCore

extension KMSNode {
    /// A query without a KMS record: A/AAAA from the zone's address table, TXT through the
    /// key path as an anonymous inquiry (plus any ordinary TXT data), other types by existence.
    func answer(plain request: Request) -> Step {
        let name = request.question.name
        let route = router.route(name)
        switch request.question.type {
        case .txt:
            metrics.count(.anonymous)
            return answerAnonymous(request, route: route)
        case .a, .aaaa:
            metrics.count(.address)
            return answerAddress(request, route: route)
        default:
            metrics.count(.other)
            guard case .local = route else {
                return refuse(request, ExtendedDNSError(.notSupported, "only A, AAAA and TXT are served for names outside \(zone)"))
            }
            return .reply(nameExists(name) ? nodata(request) : nxdomain(request))
        }
    }

    /// PROTOCOL.md section 4: a plain TXT query follows the inquiry path with an empty nonce and
    /// the configured default signer, so `dig TXT hostb.c.a.xx` shows the answer.
    private func answerAnonymous(_ request: Request, route: Route) -> Step {
        let name = request.question.name
        let ordinary = (configuration.txt[name] ?? []).map {
            ResourceRecord(name: name, ttl: 300, data: .txt([$0]))
        }
        let isHost = route == .local && registry.contains(name)
        if !ordinary.isEmpty && !isHost {
            var message = request.message.response(rcode: .noError)
            message.answers = ordinary
            return .reply(Reply(message, answering: request.message))
        }
        guard configuration.allowAnonymous else {
            return refuse(request, ExtendedDNSError(.prohibited, "anonymous key queries are refused here; send a signed kms1:inquiry"))
        }
        if route == .outside {
            return refuse(request, ExtendedDNSError(.notAuthoritative, "\(name) is not in the hierarchy under \(zone)"))
        }
        if let overBudget = spending.mayAnswerAnonymously(request) {
            metrics.throttledAnonymous.increment()
            return overBudget.step(for: request)
        }
        let client = request.client.ip ?? configuration.listen.address
        var hops = Hops(node: zone, enabled: traceAllowed(request))
        hops.note("anonymous query from \(client) for \(name), signer \(configuration.defaultSigner)")
        let step = resolveKey(target: name.lowercased, signer: configuration.defaultSigner, ip: client, route: route, hops: hops)
        return keyReply(step, to: request, nonce: .empty, extra: ordinary)
    }

    /// A and AAAA: the zone's own hosts from memory; other names of the hierarchy from the
    /// child or parent, as a stub resolver would get them. Queries only go up while RD is set,
    /// and this node asks upward with RD set and downward without, so nothing loops.
    private func answerAddress(_ request: Request, route: Route) -> Step {
        let question = request.question
        switch route {
        case .local:
            guard let addresses = registry.addresses(of: question.name, ipv6: question.type == .aaaa) else {
                return .reply(nameExists(question.name) ? nodata(request) : nxdomain(request))
            }
            var message = request.message.response(rcode: .noError)
            message.answers = addresses.map { ResourceRecord(name: question.name, ttl: 300, data: $0.rdata) }
            guard policy == nil else {
                addVerdict(to: &message, for: request)
                return .reply(Reply(message, answering: request.message))
            }
            return .cacheable(Reply(message, answering: request.message), query: request.bytes, transport: request.transport)
        case .outside:
            return refuse(request, ExtendedDNSError(.notAuthoritative, "\(question.name) is not in the hierarchy under \(zone); this is not an open resolver"))
        case .parent(let peer) where !request.message.header.recursionDesired:
            return refuse(request, ExtendedDNSError(.notAuthoritative, "\(question.name) is not below \(zone) (set RD to have it looked up via \(peer.name))"))
        case .child(let peer), .parent(let peer):
            let upward = route == .parent(peer)
            guard let ticket = spending.startFetch(for: request) else {
                metrics.throttledUpstream.increment()
                return .reply(Replies.error(to: request.message, .serverFailure, spending.busy(request).error, querySize: request.size))
            }
            return .later { [self] in
                let reply = await forwardAddress(request, to: peer, recursionDesired: upward)
                ticket.done()
                return reply
            }
        }
    }

    private func forwardAddress(_ request: Request, to peer: Peer, recursionDesired: Bool) async -> Reply {
        var query = DNSMessage.query(id: 0, name: request.question.name, type: request.question.type)
        query.header.recursionDesired = recursionDesired
        do {
            let answer = try await upstream.client.query(query, server: .from(peer.endpoint), timeout: upstream.timeout)
            var message = request.message.response(rcode: answer.rcode, authoritative: false)
            message.header.recursionAvailable = true
            message.answers = answer.answers
            message.authorities = answer.authorities
            if message.edns != nil { for error in answer.extendedErrors { message.addExtendedError(error) } }
            addVerdict(to: &message, for: request)
            return Reply(message, answering: request.message)
        } catch {
            let reason = (error as? DNSClientError).map { "\(peer.name) (\(peer.endpoint)): \($0.reason)" } ?? "\(error)"
            return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.noReachableAuthority, reason), querySize: request.size)
        }
    }

    /// Second embodiment: with a policy database, an address answer carries this node's signed
    /// `kms1:cug` verdict for the asking client, bound to the query by its `VerdictNonce`
    /// (PROTOCOL.md section 6; docs/PROTOCOL.md). A verdict with a nonce is signed for that
    /// query alone; one without (a plain `dig`) is reused within its second. A query whose
    /// nonce option is malformed gets no verdict, which a proxy refuses.
    private func addVerdict(to message: inout DNSMessage, for request: Request) {
        guard let policy, message.rcode == .noError, !message.answers.isEmpty,
            let client = request.client.ip,
            let nonce = try? VerdictNonce.nonce(in: request.message)
        else { return }
        let name = request.question.name.lowercased
        let now = Self.now()
        let verdict = CUGVerdict(
            target: name, path: policy.current.row(client: client, name: name)?.settings, client: client, from: zone, nonce: nonce,
            time: now)
        let sign = { [configuration] in try? verdict.record().signed(by: configuration.key).resourceRecord() }
        let record = nonce.isEmpty ? verdicts.record(for: verdict, second: now, sign: sign) : sign()
        if let record { message.additionals.append(record) }
    }

    /// Whether a name of this zone exists: the apex, a registered host, a name with TXT data,
    /// or an ancestor of one of them (an empty non-terminal).
    private func nameExists(_ name: DomainName) -> Bool {
        name == zone || registry.exists(name) || configuration.txt[name] != nil
    }

    private func nodata(_ request: Request) -> Reply {
        Reply(request.message.response(rcode: .noError), answering: request.message)
    }

    private func nxdomain(_ request: Request) -> Reply {
        Reply(request.message.response(rcode: .nameError), answering: request.message)
    }
}
