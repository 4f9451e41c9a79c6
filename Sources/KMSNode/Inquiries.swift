import DNSTransport
import DNSWire
import KMSCrypto
import KMSProtocol
import KMSSettings
import NIOCore

extension KMSNode {
    /// A `kms1:inquiry` (PROTOCOL.md section 4): authenticate, then resolve the key, then
    /// reply with a `kms1:answer` signed by this node that echoes the nonce.
    func answer(inquiry record: KMSRecord, _ request: Request) -> Step {
        let inquiry: Inquiry
        switch parse(record, request, as: Inquiry.init, target: \.target) {
        case .success(let parsed): inquiry = parsed
        case .failure(let formatError): return formatError.step
        }
        let sender: Sender
        switch authenticate(record, from: inquiry.from, nonce: inquiry.nonce, time: inquiry.time, request) {
        case .success(let who): sender = who
        case .failure(let refusal):
            logger.debug("refused inquiry", metadata: ["from": "\(inquiry.from)", "reason": "\(refusal.error.text)"])
            return refusal.step(for: request)
        }
        // A neighbour that fetches a key through this node is told if it is withdrawn.
        switch sender {
        case .parent(let peer), .child(let peer): subscribers.note(inquiry.target, fetchedBy: peer.name)
        case .host: break
        }
        let route = router.route(inquiry.target)
        if loopsBack(route, to: sender) {
            return .reply(Replies.error(
                to: request.message, .refused,
                ExtendedDNSError(.notAuthoritative, "\(inquiry.target) is not below \(zone); not sending it back to \(sender.name)"),
                querySize: request.size))
        }
        // The requester's address: the host's own, replaced by this KMS's once forwarded.
        let ip: IPAddress
        if case .host = sender { ip = configuration.listen.address } else { ip = inquiry.ip }
        var hops = Hops(node: zone, enabled: traceAllowed(request))
        hops.note("inquiry from \(sender.name) for \(inquiry.target), signer \(inquiry.signer)")
        let step = resolveKey(
            target: inquiry.target, signer: inquiry.signer, ip: ip, route: route, hops: hops, wait: upstream.wait(for: request),
            audit: AuditRequest.isRequested(by: request.message))
        return keyReply(step, to: request, nonce: inquiry.nonce)
    }

    /// Turns a key outcome into the reply to an inquiry or an anonymous TXT query.
    func keyReply(_ step: KeyStep, to request: Request, nonce: Nonce, extra: [ResourceRecord] = []) -> Step {
        switch step {
        case .now(let outcome, let hops):
            return .reply(reply(outcome, hops, to: request, nonce: nonce, extra: extra))
        case .later(let work, let shared):
            // Waiting for an identical fetch already under way costs no upstream work: a
            // burst of inquiries for one name (a proxy starting, a cold cache) is one fetch,
            // and must not run into the client's cap of fetches in flight. The shared fetch is
            // registered here, as the request arrives, so the rest of a burst read in the
            // same pass finds it.
            let running = shared.flatMap { spending.fetches.running($0) }
            if running == nil {
                // An anonymous query (no nonce) from an address nothing proved: the node's
                // budget of such fetches, before any upstream work.
                if nonce.isEmpty, let refusal = spending.mayFetchAnonymously(request) {
                    metrics.throttledAnonymous.increment()
                    return refusal.step(for: request)
                }
            }
            guard let ticket = spending.startFetch(for: request, joining: running != nil) else {
                metrics.throttledUpstream.increment()
                return .reply(Replies.error(to: request.message, .serverFailure, spending.busy(request).error, querySize: request.size))
            }
            let fetch = running ?? shared.map { spending.fetches.start($0, work) }
            return .later { [self] in
                let (outcome, hops) = if let fetch { await fetch.value } else { await work() }
                ticket.done()
                return reply(outcome, hops, to: request, nonce: nonce, extra: extra)
            }
        }
    }

    private func reply(_ outcome: KeyOutcome, _ hops: Hops, to request: Request, nonce: Nonce, extra: [ResourceRecord]) -> Reply {
        let now = Self.now()
        var message: DNSMessage
        var proofs: [ResourceRecord] = []
        switch outcome {
        case .key(let countersignature, let proof, let ttl, let authoritative):
            guard var answer = signedAnswer(countersignature, nonce: nonce, now: now) else {
                return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "cannot sign the answer"), querySize: request.size)
            }
            answer.ttl = ttl
            message = request.message.response(rcode: .noError, authoritative: authoritative)
            message.answers = [answer] + extra
            proofs = proofRecords(proof, for: request)
        case .unresolved:
            let unresolved = Unresolved(target: request.question.name.lowercased, from: zone, nonce: nonce, time: now)
            guard let record = try? unresolved.record().signed(by: configuration.key) else {
                return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "cannot sign the answer"), querySize: request.size)
            }
            let isLocal = router.route(request.question.name) == .local
            message = request.message.response(rcode: .nameError, authoritative: isLocal)
            message.authorities = [record.resourceRecord()]
            // An anonymous answer about this zone is also an ordinary negative answer: the SOA
            // follows (RFC 2308). Signed answers stay exactly as PROTOCOL.md section 3 shows.
            if nonce.isEmpty && isLocal { message.authorities.append(dnsZone.negativeSOA) }
        case .refused(let error):
            var reply = Replies.error(to: request.message, .refused, error, querySize: request.size)
            reply.message.additionals += hops.records
            return reply
        case .failed(let error):
            metrics.upstreamFailures.increment()
            var reply = Replies.error(to: request.message, .serverFailure, error, querySize: request.size)
            reply.message.additionals += hops.records
            return reply
        }
        message.additionals = hops.records + proofs
        return Reply(message, answering: request.message)
    }

    /// The inclusion proof and its tree head, for a request that asked for them (EDNS 65004).
    func proofRecords(_ proof: InclusionProof?, for request: Request) -> [ResourceRecord] {
        guard let proof, AuditRequest.isRequested(by: request.message) else { return [] }
        return proof.records
    }

    /// The `kms1:answer` record for a countersigned key, signed by this node. Anonymous answers
    /// (empty nonce) are reused within the second they were signed (`PerSecondCache`).
    private func signedAnswer(_ countersignature: Countersignature, nonce: Nonce, now: UnixTime) -> ResourceRecord? {
        let sign = { [self] () -> ResourceRecord? in
            let answer = KeyAnswer(kind: .answer, countersignature: countersignature, from: zone, nonce: nonce, time: now)
            return try? answer.record().signed(by: configuration.key).resourceRecord()
        }
        guard nonce.isEmpty else { return sign() }
        return anonymousAnswers.record(for: countersignature, second: now, sign: sign)
    }

    /// Resolves (target, signer) to a countersigned key: PROTOCOL.md section 4, steps 2 to 4.
    /// With `audit`, the key comes with its inclusion proof, or from where one can be had: a
    /// cached entry without one counts as a miss.
    func resolveKey(
        target: DomainName, signer: DomainName, ip: IPAddress, route: Route, hops: Hops, wait: TimeAmount, audit: Bool = false
    ) -> KeyStep {
        var hops = hops
        let now = Self.now()
        // Step 2: cached or stored with a valid countersignature.
        if let entry = cache.lookup(target: target, signer: signer, now: now), !audit || entry.proof != nil {
            metrics.cacheHits.increment()
            hops.note("cache hit: \(target) countersigned by \(signer), stored \(now - entry.storedAt) s ago")
            let isLocal = route == .local
            return .now(.key(entry.countersignature, proof: entry.proof, ttl: UInt32(entry.expiresAt - now), authoritative: isLocal), hops)
        }
        // Stored: the countersignature this node publishes for its own host as zone data
        // (`_kms1.<host>`), verified when it came and withdrawn when the key changes. Without
        // this, a host published long ago still cost a sigreq up to the signer on every cache
        // miss: a signature and a verify at each hop, and a log entry at the signer.
        if route == .local, !audit, let published = publishedCountersignature(of: target, by: signer, now: now) {
            metrics.cacheHits.increment()
            hops.note("\(target) registered here; \(signer)'s countersignature is published in \(zone), valid until \(published.notAfter)")
            let ttl = UInt32(min(published.notAfter, now + cache.maximumAge) - now)
            return .now(.key(published, proof: nil, ttl: ttl, authoritative: true), hops)
        }
        metrics.cacheMisses.increment()
        // Step 3: route by name.
        switch route {
        case .outside:
            hops.note("\(target) is outside \(zone), the top of this hierarchy")
            return .now(.refused(ExtendedDNSError(.notAuthoritative, "\(target) is not in the hierarchy under \(zone)")), hops)
        case .child(let peer), .parent(let peer):
            if spending.unresolved.contains(target) {
                hops.note("\(peer.name) said \(target) is unresolved less than \(Int(spending.limits.negativeTTL)) s ago")
                return .now(.unresolved, hops)
            }
            hops.note("cache miss; forwarding to \(peer)")
            // A traced request carries its own notes, so only untraced ones share a fetch.
            guard !hops.enabled else {
                return .later { [self, hops] in
                    await forward(target: target, signer: signer, ip: ip, to: peer, hops: hops, wait: wait, audit: audit)
                }
            }
            let key = FetchKey(target: target, signer: signer, ip: ip, peer: peer.name, audit: audit)
            return .later({ [self, hops] in
                await forward(target: target, signer: signer, ip: ip, to: peer, hops: hops, wait: wait, audit: audit)
            }, shared: key)
        case .local:
            guard let host = registry[target] else {
                hops.note("\(target) is not registered in \(zone): unresolved")
                return .now(.unresolved, hops)
            }
            if signer == zone {
                // Issuing waits for the log's write; concurrent askers share one issue.
                let key = FetchKey(target: target, signer: signer, ip: configuration.listen.address, peer: zone, audit: false)
                return .later({ [self, hops] in await issueLocal(host, now: now, hops: hops) }, shared: key)
            }
            guard let parent = configuration.parent, zone.isSubdomain(of: signer) else {
                hops.note("signer \(signer) is not on the path from \(zone) to the root")
                return .now(.refused(ExtendedDNSError(.notAuthoritative, "signer not on path: \(signer) is not above \(zone)")), hops)
            }
            hops.note("\(target) registered here; asking \(parent.name) for \(signer)'s countersignature")
            return .later { [self, hops] in
                await requestCountersignature(for: host, signer: signer, ip: ip, via: parent, hops: hops, wait: wait, audit: audit)
            }
        }
    }

    /// The countersignature of `target`'s current key by `signer` that this node publishes,
    /// if it is valid at `now`.
    private func publishedCountersignature(of target: DomainName, by signer: DomainName, now: UnixTime) -> Countersignature? {
        registry.published(of: target).first { $0.signer == signer && (try? $0.checkValidity(at: now)) != nil }
    }

    /// This node is the signer and the host is its own: countersign, log, cache.
    private func issueLocal(_ host: RegisteredHost, now: UnixTime, hops: Hops) async -> (KeyOutcome, Hops) {
        var hops = hops
        let countersignature: Countersignature
        let proof: InclusionProof
        do {
            (countersignature, proof) = try await issue(target: host.name, key: host.key, now: now)
        } catch {
            return (.failed(ExtendedDNSError(.other, "\(zone) could not countersign: \(error)")), hops)
        }
        cache.store(countersignature, proof: proof, at: now)
        hops.note("countersigned \(host.name) as \(zone), valid \(countersignature.notBefore)–\(countersignature.notAfter); logged at index \(proof.index)")
        let ttl = UInt32(min(countersignature.notAfter, now + cache.maximumAge) - now)
        return (.key(countersignature, proof: proof, ttl: ttl, authoritative: true), hops)
    }

    /// Issues a countersignature by this node, valid from a little before now (clock skew
    /// allowance: the replay window) for the configured validity. It returns once the
    /// countersignature is in this node's transparency log, on disk: none leaves unlogged.
    func issue(target: DomainName, key: PublicKey, now: UnixTime) async throws -> (Countersignature, InclusionProof) {
        let countersignature = try Countersignature.issue(
            target: target, key: key, signer: zone, signerKey: configuration.key,
            notBefore: now - UnixTime(configuration.replayWindow),
            notAfter: now + UnixTime(configuration.countersignatureValidity))
        let proof: InclusionProof
        do {
            proof = try await log.append(countersignature, at: now)
        } catch {
            logger.error("cannot log an issued countersignature; not handing it out", metadata: ["target": "\(target)", "error": "\(error)"])
            throw error
        }
        metrics.countersignaturesIssued.increment()
        return (countersignature, proof)
    }

    /// Step 3, forwarding: ask the child or the parent with an inquiry signed by this node.
    private func forward(
        target: DomainName, signer: DomainName, ip: IPAddress, to peer: Peer, hops: Hops, wait: TimeAmount, audit: Bool
    ) async -> (KeyOutcome, Hops) {
        var hops = hops
        let zone = zone
        guard let answer = await upstream.ask(
            peer, target: target,
            request: { nonce, time in try Inquiry(target: target, signer: signer, ip: ip, from: zone, nonce: nonce, time: time).record() },
            expecting: .answer, hops: &hops, wait: wait, audit: audit)
        else { return (.failed(ExtendedDNSError(.other, "\(zone) could not sign an inquiry")), hops) }
        switch answer {
        case .key(let key, let proof):
            return (accept(key.countersignature, proof: proof, target: target, signer: signer, from: peer, expectedKey: nil, hops: &hops), hops)
        case .unresolved:
            hops.note("\(peer.name) says \(target) is unresolved")
            spending.unresolved.insert(target)
            return (.unresolved, hops)
        case .error(let rcode, let errors):
            hops.note("\(peer.name) answered \(rcode)")
            return (.passOn(rcode, errors, from: peer.name), hops)
        case .failed(let error):
            warnings.warning("upstream failed", metadata: ["peer": "\(peer)", "reason": "\(error.text)"])
            hops.note(error.text)
            return (.failed(error), hops)
        }
    }

    /// Step 3, the target is ours but the signer is above: a sigreq up the parent chain.
    func requestCountersignature(
        for host: RegisteredHost, signer: DomainName, ip: IPAddress, via parent: Peer, hops: Hops, wait: TimeAmount, audit: Bool = false
    ) async -> (KeyOutcome, Hops) {
        var hops = hops
        let zone = zone
        guard let answer = await upstream.ask(
            parent, target: host.name,
            request: { nonce, time in
                try SignatureRequest(target: host.name, key: host.key, signer: signer, ip: ip, from: zone, nonce: nonce, time: time).record()
            },
            expecting: .countersignature, hops: &hops, wait: wait, audit: audit)
        else { return (.failed(ExtendedDNSError(.other, "\(zone) could not sign a sigreq")), hops) }
        switch answer {
        case .key(let key, let proof):
            // The key may have been rotated while we waited: never serve the old one.
            guard registry[host.name]?.key == key.key else {
                hops.note("\(host.name) was re-registered meanwhile; discarding the countersignature over its old key")
                return (.failed(ExtendedDNSError(.other, "\(host.name) changed key during the request; ask again")), hops)
            }
            return (accept(key.countersignature, proof: proof, target: host.name, signer: signer, from: parent, expectedKey: host.key, hops: &hops), hops)
        case .unresolved:
            return (.failed(ExtendedDNSError(.invalidData, "\(parent.name) answered a sigreq with unresolved")), hops)
        case .error(let rcode, let errors):
            hops.note("\(parent.name) answered \(rcode)")
            return (.passOn(rcode, errors, from: parent.name), hops)
        case .failed(let error):
            warnings.warning("upstream failed", metadata: ["peer": "\(parent)", "reason": "\(error.text)"])
            hops.note(error.text)
            return (.failed(error), hops)
        }
    }

    /// Step 4: check what came back (`CountersignaturePolicy`), then cache and record it. The
    /// hop signature was checked by `Upstream`.
    private func accept(
        _ countersignature: Countersignature, proof: InclusionProof?, target: DomainName, signer: DomainName, from peer: Peer,
        expectedKey: PublicKey?, hops: inout Hops
    ) -> KeyOutcome {
        let now = Self.now()
        let signerKey = knownKey(of: signer)
        do {
            try CountersignaturePolicy(target: target, signer: signer, signerKey: signerKey, key: expectedKey)
                .check(countersignature, at: now)
        } catch {
            hops.note("rejected the answer from \(peer.name): \(error)")
            return .failed(ExtendedDNSError(.dnssecBogus, "answer from \(peer.name) rejected: \(error)"))
        }
        // An inclusion proof is kept only if it checks (where the signer's key is held here);
        // the key itself stands on its countersignature either way.
        var proof = proof
        if let given = proof, let signerKey {
            do { try given.verify(countersignature, signerKey: signerKey) } catch {
                warnings.warning("dropped an inclusion proof that does not verify", metadata: ["from": "\(peer.name)", "reason": "\(error)"])
                hops.note("dropped the inclusion proof from \(peer.name): \(error)")
                proof = nil
            }
        }
        cache.store(countersignature, proof: proof, at: now)
        store.record(countersignature, origin: .received, at: now) { [warnings] error in
            if let error { warnings.warning("cannot record a received countersignature", metadata: ["error": "\(error)"]) }
        }
        hops.note("verified and cached \(target) countersigned by \(signer), valid until \(countersignature.notAfter)")
        let ttl = UInt32(max(0, min(countersignature.notAfter, now + cache.maximumAge) - now))
        return .key(countersignature, proof: proof, ttl: ttl, authoritative: false)
    }
}
