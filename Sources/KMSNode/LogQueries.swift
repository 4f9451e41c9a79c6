import DNSTransport
import DNSWire
import KMSProtocol

extension KMSNode {
    /// A question to this node's transparency log (`LogQuery`): its latest signed head, a run
    /// of entries, or a consistency proof between two sizes, as TXT data of this zone. A
    /// question beyond the log's size gets NOERROR with no data and the SOA (NODATA).
    func answerLog(_ request: Request, _ query: LogQuery) -> Reply {
        let name = request.question.name
        var message = request.message.response(rcode: .noError, authoritative: true)
        switch query {
        case .head:
            message.answers = [ResourceRecord(name: name, ttl: 0, data: .txt(log.head.strings))]
        case .entries(let first, let end):
            do {
                message.answers = try log.entries(first: first, end: end).map { index, entry in
                    ResourceRecord(name: name, ttl: 0, data: .txt(entry.strings(index: index)))
                }
            } catch {
                logger.error("cannot read the transparency log", metadata: ["error": "\(error)"])
                return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "cannot read the log: \(error)"), querySize: request.size)
            }
        case .consistency(let old, let new):
            if let proof = log.consistency(old: old, new: new) {
                message.answers = [ResourceRecord(name: name, ttl: 0, data: .txt(proof.strings))]
            }
        }
        guard !message.answers.isEmpty else {
            message.authorities = [dnsZone.negativeSOA]
            return Reply(message, answering: request.message)
        }
        return Reply(message, answering: request.message)
    }
}
