import DNSTransport
import DNSWire
import KMSProtocol

extension KMSNode {
    /// A `kms1:rotate` in a DNS UPDATE (docs/PROTOCOL.md, "Rotation"): a registered host of
    /// this zone replacing its own key. Authenticated like any signed request (sender, time,
    /// nonce, budgets, then the current key's signature), then the new key's proof of
    /// possession; the new key is stored durably before the NOERROR is sent. With
    /// `self-rotation refuse`, only an operator (`kms register`) may change keys.
    func answer(rotation record: KMSRecord, _ request: Request) -> Step {
        guard request.question.name == zone, request.question.type == .soa else {
            return .reply(Replies.error(
                to: request.message, Self.notAuth,
                ExtendedDNSError(.notAuthoritative, "this KMS updates the zone \(zone); the zone section names \(request.question.name)"),
                querySize: request.size))
        }
        let rotation: Rotation
        do { rotation = try Rotation(record) } catch {
            return .reply(Replies.error(to: request.message, .formatError, ExtendedDNSError(.invalidData, "\(error)"), querySize: request.size))
        }
        guard case .local = router.route(rotation.target), registry.contains(rotation.target) else {
            return refuse(request, ExtendedDNSError(.prohibited, "\(rotation.target) is not a host registered in \(zone)"))
        }
        guard configuration.selfRotation else {
            return refuse(request, ExtendedDNSError(
                .prohibited, "hosts of \(zone) may not rotate their own keys here; ask its operator (kms register)"))
        }
        switch authenticate(record, from: rotation.target, nonce: rotation.nonce, time: rotation.time, request) {
        case .success: break
        case .failure(let refusal):
            logger.debug("refused rotation", metadata: ["host": "\(rotation.target)", "reason": "\(refusal.error.text)"])
            return refusal.step(for: request)
        }
        do { try rotation.verifyProof() } catch {
            return refuse(request, ExtendedDNSError(.dnssecBogus, "no proof of possession: \(error)"))
        }
        guard let current = registry[rotation.target], current.key != rotation.key else {
            return refuse(request, ExtendedDNSError(.invalidData, "the new key is the current key"))
        }
        do {
            try register(name: rotation.target, key: rotation.key, addresses: current.addresses)
        } catch {
            return .reply(Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "\(error)"), querySize: request.size))
        }
        logger.notice("host rotated its key", metadata: ["host": "\(rotation.target)", "key": "\(KeyField.encode(rotation.key).prefix(24))…"])
        return .reply(Reply(request.message.response(rcode: .noError, authoritative: false), answering: request.message))
    }

    /// NOTAUTH (RFC 2136): not authoritative for the zone named in an UPDATE.
    static let notAuth = RCode(rawValue: 9)
}
