import DNSTransport
import DNSWire
import KMSProtocol
import KMSSettings
import NIOCore

extension KMSNode {
    static let axfr = RRType(rawValue: 252)
    static let ixfr = RRType(rawValue: 251)
    static let ds = RRType(rawValue: 43)
    /// NOTIFY (RFC 1996).
    static let notifyOpcode = OpCode(rawValue: 4)

    /// The whole zone, as a transfer carries it: the SOA first, then NS and glue, the
    /// delegations, the hosts' addresses, ordinary TXT and the static countersignatures (the
    /// closing SOA is the caller's).
    func zoneRecords(now: UnixTime) -> [ResourceRecord] {
        var records = [dnsZone.soa] + dnsZone.apexNS
        records += dnsZone.addresses(of: dnsZone.nameServers.filter { $0.name.isEqualOrSubdomain(of: zone) })
        for child in configuration.children.map(\.name).sorted(by: { $0.text < $1.text }) {
            let (ns, glue) = dnsZone.referral(to: child)
            records += ns + glue
        }
        for (name, addresses) in registry.addressTable {
            records += addresses.map { ResourceRecord(name: name, ttl: 300, data: $0.rdata) }
        }
        for (name, strings) in configuration.txt.sorted(by: { $0.key.text < $1.key.text }) {
            records += strings.map { ResourceRecord(name: name, ttl: 300, data: .txt([$0])) }
        }
        records += staticRecords.all.compactMap { StaticCountersignature($0).record(ttl: staticTTL($0, now: now)) }
        return records
    }

    /// A static record's TTL: an hour, or less when its countersignature expires sooner.
    func staticTTL(_ countersignature: Countersignature, now: UnixTime) -> UInt32 {
        UInt32(clamping: max(0, min(3600, countersignature.notAfter - now)))
    }

    /// Whether `request`'s client may transfer the zone (`secondary`).
    func mayTransfer(_ request: Request) -> Bool {
        request.client.ip?.isIn(configuration.secondaries) ?? false
    }

    /// AXFR (RFC 5936) and IXFR (RFC 1995): to listed secondaries only, over TCP, and signed
    /// with the `transfer-key` when one is configured (RFC 8945; the request must be signed
    /// with it too). IXFR is always answered with the whole zone (RFC 1995 section 4 allows
    /// it); over UDP it gets the SOA alone, which tells the secondary to come back over TCP.
    func answerTransfer(_ request: Request) -> Step {
        guard mayTransfer(request) else {
            return refuse(request, ExtendedDNSError(.prohibited, "zone transfers of \(zone) are for its listed secondaries only"))
        }
        var requestMAC: [UInt8]?
        if let key = configuration.transferKey {
            switch key.check(Array(request.bytes.readableBytesView)) {
            case .valid(let mac): requestMAC = mac
            case .missing:
                return refuse(request, ExtendedDNSError(.prohibited, "zone transfers of \(zone) must be signed with TSIG key \(key.name)"))
            case .invalid(let reason):
                return refuse(request, ExtendedDNSError(.prohibited, "TSIG: \(reason)"))
            }
        }
        guard request.question.name == zone else {
            return refuse(request, ExtendedDNSError(.notAuthoritative, "\(request.question.name) is not the apex of \(zone)"))
        }
        // Right after a start the static records come back host by host: a secondary that
        // took the zone now would serve it without them until its next transfer. It keeps
        // its copy instead, and is sent NOTIFY when the zone is whole again.
        if staticRecords.isRepublishing {
            return .reply(Replies.error(
                to: request.message, .serverFailure,
                ExtendedDNSError(.notReady, "\(zone) is republishing its static records after a start (\(staticRecordsPending) hosts to go); NOTIFY follows"),
                querySize: request.size))
        }
        var messages: [DNSMessage] = []
        if request.transport == .udp {
            guard request.question.type == Self.ixfr else {
                return refuse(request, ExtendedDNSError(.notSupported, "AXFR is served over TCP"))
            }
            var message = request.message.response(rcode: .noError, authoritative: true)
            message.answers = [dnsZone.soa]
            messages = [message]
        } else {
            let records = zoneRecords(now: Self.now()) + [dnsZone.soa]
            var index = 0
            while index < records.count {
                var message = request.message.response(rcode: .noError, authoritative: true)
                if index > 0 { message.questions = [] }  // RFC 5936 section 2.2.1: the first message only
                message.answers = Array(records[index..<min(index + Self.recordsPerTransferMessage, records.count)])
                messages.append(message)
                index += Self.recordsPerTransferMessage
            }
            logger.info("zone transfer", metadata: [
                "client": "\(request.client.endpointText)", "records": "\(records.count)", "serial": "\(dnsZone.serial)",
                "tsig": "\(configuration.transferKey.map { "\($0.name)" } ?? "none")",
            ])
        }
        var encoded: [[UInt8]] = []
        var previousMAC = requestMAC
        for (index, message) in messages.enumerated() {
            do {
                if let key = configuration.transferKey {
                    let (wire, mac) = try message.wire(signedWith: key, previousMAC: previousMAC, timersOnly: index > 0)
                    encoded.append(wire)
                    previousMAC = mac
                } else {
                    encoded.append(try message.wire())
                }
            } catch {
                return .reply(Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.other, "\(error)"), querySize: request.size))
            }
        }
        return .messages(encoded)
    }

    /// Keeps each transfer message well under the 65535 bytes TCP framing allows.
    static let recordsPerTransferMessage = 100

    /// Tells every `notify` target that the serial moved (RFC 1996): up to three tries each,
    /// a second apart, until it answers.
    func notifySecondaries() async {
        let serial = dnsZone.serial
        for target in configuration.notify {
            var message = DNSMessage.query(id: 0, name: zone, type: .soa)
            message.header.opcode = Self.notifyOpcode
            message.header.isAuthoritative = true
            message.answers = [dnsZone.soa]
            var answered = false
            if let server = try? target.socketAddress() {
                for _ in 0..<3 where !answered {
                    if (try? await upstream.client.query(message, server: server, timeout: .seconds(1))) != nil { answered = true }
                }
            }
            if answered {
                logger.info("notified", metadata: ["secondary": "\(target)", "serial": "\(serial)"])
            } else {
                warnings.warning("a secondary did not answer NOTIFY", metadata: ["secondary": "\(target)", "serial": "\(serial)"])
            }
        }
    }
}
