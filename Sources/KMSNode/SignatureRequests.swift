import DNSTransport
import DNSWire
import KMSProtocol
import KMSSettings

extension KMSNode {
    /// A `kms1:sigreq` from a child: countersign if this node is the signer, otherwise pass it
    /// up to the parent (re-signed), and reply with a `kms1:countersig` signed by this node.
    func answer(signatureRequest record: KMSRecord, _ request: Request) -> Step {
        let sigreq: SignatureRequest
        switch parse(record, request, as: SignatureRequest.init, target: \.target) {
        case .success(let parsed): sigreq = parsed
        case .failure(let formatError): return formatError.step
        }
        let child: Peer
        switch authenticate(record, from: sigreq.from, nonce: sigreq.nonce, time: sigreq.time, request) {
        case .success(.child(let peer)): child = peer
        case .success(let other):
            return refuse(request, ExtendedDNSError(.prohibited, "only a child KMS may ask for a countersignature, not \(other.name)"))
        case .failure(let refusal):
            logger.debug("refused sigreq", metadata: ["from": "\(sigreq.from)", "reason": "\(refusal.error.text)"])
            return refusal.step(for: request)
        }
        // A child vouches only for names in its own zone.
        guard sigreq.target.isEqualOrSubdomain(of: child.name) else {
            return refuse(request, ExtendedDNSError(.prohibited, "\(child.name) may not ask for \(sigreq.target), outside its zone"))
        }
        var hops = Hops(node: zone, enabled: traceAllowed(request))
        let now = Self.now()
        if sigreq.signer == zone {
            return .later { [self, hops] in
                var hops = hops
                guard let (countersignature, proof) = try? await issue(target: sigreq.target, key: sigreq.key, now: now) else {
                    return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "\(zone) could not countersign"), querySize: request.size)
                }
                hops.note("countersigned \(sigreq.target) for \(child.name), valid \(countersignature.notBefore)–\(countersignature.notAfter); logged at index \(proof.index)")
                return countersignatureReply(countersignature, proof: proof, hops, to: request, nonce: sigreq.nonce)
            }
        }
        guard let parent = configuration.parent, zone.isSubdomain(of: sigreq.signer) else {
            return refuse(request, ExtendedDNSError(.notAuthoritative, "signer not on path: \(sigreq.signer) is not above \(zone)"))
        }
        hops.note("passing \(child.name)'s sigreq for \(sigreq.target) up to \(parent)")
        return .later { [self, hops] in
            await passUp(sigreq, via: parent, hops: hops, request: request)
        }
    }

    private func passUp(_ sigreq: SignatureRequest, via parent: Peer, hops: Hops, request: Request) async -> Reply {
        var hops = hops
        let zone = zone
        guard let answer = await upstream.ask(
            parent, target: sigreq.target,
            request: { nonce, time in
                try SignatureRequest(
                    target: sigreq.target, key: sigreq.key, signer: sigreq.signer, ip: sigreq.ip, from: zone, nonce: nonce, time: time
                ).record()
            },
            expecting: .countersignature, hops: &hops, wait: upstream.wait(for: request),
            audit: AuditRequest.isRequested(by: request.message))
        else {
            return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "\(zone) could not sign"), querySize: request.size)
        }
        let failure: (RCode, ExtendedDNSError)
        switch answer {
        case .key(let key, let proof):
            // The same acceptance policy as the inquiry path: target, key, signer, signature
            // (where this node holds the signer's key), validity.
            let policy = CountersignaturePolicy(
                target: sigreq.target, signer: sigreq.signer, signerKey: knownKey(of: sigreq.signer), key: sigreq.key)
            do { try policy.check(key.countersignature, at: Self.now()) } catch {
                hops.note("rejected the countersignature from \(parent.name): \(error)")
                failure = (.serverFailure, ExtendedDNSError(.dnssecBogus, "countersignature from \(parent.name) rejected: \(error)"))
                break
            }
            return countersignatureReply(key.countersignature, proof: proof, hops, to: request, nonce: sigreq.nonce)
        case .unresolved:
            failure = (.serverFailure, ExtendedDNSError(.invalidData, "\(parent.name) answered a sigreq with unresolved"))
        case .error(let rcode, let errors):
            failure = (rcode == .refused ? .refused : .serverFailure, errors.first ?? ExtendedDNSError(.other, "\(parent.name) answered \(rcode)"))
        case .failed(let error):
            failure = (.serverFailure, error)
        }
        var reply = Replies.error(to: request.message, failure.0, failure.1, querySize: request.size)
        reply.message.additionals += hops.records
        return reply
    }

    private func countersignatureReply(
        _ countersignature: Countersignature, proof: InclusionProof?, _ hops: Hops, to request: Request, nonce: Nonce
    ) -> Reply {
        let answer = KeyAnswer(kind: .countersignature, countersignature: countersignature, from: zone, nonce: nonce, time: Self.now())
        guard let record = try? answer.record().signed(by: configuration.key) else {
            return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "cannot sign"), querySize: request.size)
        }
        var message = request.message.response(rcode: .noError)
        message.answers = [record.resourceRecord()]
        message.additionals = hops.records + proofRecords(proof, for: request)
        return Reply(message, answering: request.message)
    }

    func refuse(_ request: Request, _ error: ExtendedDNSError) -> Step {
        logger.debug("refused", metadata: ["reason": "\(error.text)"])
        return .reply(Replies.error(to: request.message, .refused, error, querySize: request.size))
    }
}
