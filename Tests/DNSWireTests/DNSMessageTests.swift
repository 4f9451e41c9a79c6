import Foundation
import Testing

@testable import DNSWire

@Suite struct DNSMessageTests {
    @Test func queryRoundTripKeepsEveryField() throws {
        var message = DNSMessage.query(id: 0xBEEF, name: "HostB.c.a.xx.", type: .txt)
        message.header.recursionDesired = true
        message.header.checkingDisabled = true
        let decoded = try DNSMessage(wire: message.wire())
        #expect(decoded == message)
        #expect(decoded.question?.name.text == "HostB.c.a.xx.")  // case kept
        #expect(decoded.edns?.payloadSize == 1232)
    }

    @Test func responseWithAllFourSectionsRoundTrips() throws {
        let query = DNSMessage.query(id: 7, name: "hostb.c.a.xx.", type: .a)
        var response = query.response(rcode: .noError)
        response.answers = [
            ResourceRecord(name: "hostb.c.a.xx.", ttl: 300, data: IPAddress("127.0.0.12")!.rdata),
            ResourceRecord(name: "hostb.c.a.xx.", ttl: 300, data: IPAddress("2001:db8::12")!.rdata),
        ]
        response.authorities = [
            ResourceRecord(name: "c.a.xx.", ttl: 60, data: .txt([Array("authority".utf8)]))
        ]
        response.additionals = [
            ResourceRecord(name: "c.a.xx.", ttl: 60, data: .txt([[], Array("two".utf8), [UInt8](repeating: 0x41, count: 255)]))
        ]
        response.addExtendedError(ExtendedDNSError(.prohibited, "unknown sender"))
        let decoded = try DNSMessage(wire: response.wire())
        #expect(decoded == response)
        #expect(decoded.header.isResponse)
        #expect(decoded.extendedErrors == [ExtendedDNSError(.prohibited, "unknown sender")])
    }

    @Test func extendedErrorBytesAreRFC8914() throws {
        var message = DNSMessage.query(id: 1, name: "xx.", type: .txt).response(rcode: .refused)
        message.addExtendedError(ExtendedDNSError(.dnssecBogus, "bad"))
        let wire = try message.wire()
        // OPT option: code 15, length 5, info-code 6, "bad".
        let option: [UInt8] = [0, 15, 0, 5, 0, 6] + Array("bad".utf8)
        #expect(wire.suffix(option.count).elementsEqual(option))
    }

    @Test func otherTypesKeepUncompressedRData() throws {
        var response = DNSMessage.query(id: 2, name: "a.xx.", type: .ns).response()
        let target = DomainName("ns.a.xx.")
        response.answers = [ResourceRecord(name: "a.xx.", ttl: 5, data: .other(.ns, target.wire))]
        let decoded = try DNSMessage(wire: response.wire())
        #expect(decoded.answers.first?.data == .other(.ns, target.wire))
    }

    @Test func tooLongCharacterStringIsRefused() {
        var message = DNSMessage.query(id: 3, name: "xx.", type: .txt).response()
        message.answers = [ResourceRecord(name: "xx.", ttl: 0, data: .txt([[UInt8](repeating: 1, count: 256)]))]
        #expect(throws: WireError.self) { try message.wire() }
        do {
            _ = try message.wire()
        } catch {
            #expect(error.code == .stringTooLong)
        }
    }

    @Test func truncatedPacketIsMalformed() throws {
        let wire = try DNSMessage.query(id: 4, name: "hosta.b.a.xx.", type: .txt).wire()
        for length in [0, 5, 11, 12 + 3, wire.count - 1] {
            #expect(throws: WireError.self, "length \(length)") {
                try DNSMessage(wire: wire.prefix(length))
            }
        }
    }

    @Test func compressionLoopIsMalformed() {
        // Header with QDCOUNT=1; the question name is a pointer to itself (offset 12).
        let loop: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 16, 0, 1]
        #expect(throws: WireError.self) { try DNSMessage(wire: loop) }
        // Two pointers pointing at each other.
        let pair: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 14, 0xC0, 12, 0, 16, 0, 1]
        #expect(throws: WireError.self) { try DNSMessage(wire: pair) }
    }

    @Test func oversizedUDPAnswerIsCutWithTC() throws {
        var response = DNSMessage.query(id: 5, name: "big.xx.", type: .txt, payloadSize: 512).response()
        response.answers = (0..<10).map { _ in
            ResourceRecord(name: "big.xx.", ttl: 1, data: .txt([[UInt8](repeating: 0x61, count: 200)]))
        }
        let limit = DNSMessage.query(id: 5, name: "big.xx.", type: .txt, payloadSize: 512).udpResponseLimit()
        #expect(limit == 512)
        let cut = try DNSMessage(wire: response.wireForUDP(limit: limit))
        #expect(cut.header.isTruncated)
        #expect(cut.answers.isEmpty)
        #expect(cut.questions == response.questions)
        let full = try DNSMessage(wire: response.wireForUDP(limit: 65535))
        #expect(!full.header.isTruncated)
        #expect(full.answers.count == 10)
    }

    @Test func udpLimitFollowsRFC6891() {
        var query = DNSMessage.query(id: 1, name: "xx.", type: .txt, payloadSize: 100)
        #expect(query.udpResponseLimit() == 512)
        query.edns = nil
        #expect(query.udpResponseLimit() == 512)
        query.edns = EDNS(payloadSize: 4096)
        #expect(query.udpResponseLimit() == 1232)
    }

    /// RFC 6891 section 6.1: the OPT owner is found by stepping over the records before it,
    /// compression pointers included; a signed KMS query has a TXT record ahead of its OPT.
    @Test func theOPTOwnerIsCheckedWhereverTheOPTStands() throws {
        // Header (1 question, 0, 0, 2 additional), question hostb.c.a.xx. A.
        let header: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2]
        let question: [UInt8] = [5] + Array("hostb".utf8) + [1, 0x63, 1, 0x61, 2, 0x78, 0x78, 0, 0, 1, 0, 1]
        // A TXT record owned by a pointer to the question name (offset 12), then the OPT.
        let txt: [UInt8] = [0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 0, 0, 4, 3, 0x61, 0x62, 0x63]
        func opt(owner: [UInt8]) -> [UInt8] { owner + [0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0] }
        let good = try DNSMessage(wire: header + question + txt + opt(owner: [0]))
        #expect(good.edns != nil)
        #expect(good.additionals.count == 1)
        // The same OPT owned by a pointer to the question name, or by a name of its own.
        for owner in [[0xC0, 12], [1, 0x78, 0]] as [[UInt8]] {
            do {
                _ = try DNSMessage(wire: header + question + txt + opt(owner: owner))
                Issue.record("an OPT owned by \(owner) was accepted")
            } catch {
                #expect(error.reason.contains("owner is not the root"), "\(error)")
            }
        }
    }
}

/// A TSIG record anywhere but last is refused before libldns reads the message (libldns
/// takes it out wherever it stands and loses it when another record follows: a leak per
/// packet, found by `make fuzz`).
@Suite struct TSIGPlacementTests {
    static let header: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0]
    static let question: [UInt8] = [2, 0x78, 0x78, 0, 0, 6, 0, 1]
    static let tsig: [UInt8] = [0, 0, 250, 0, 255, 0, 0, 0, 0, 0, 0]  // root owner, TSIG, ANY, empty RDATA
    static let txt: [UInt8] = [0, 0, 16, 0, 1, 0, 0, 0, 0, 0, 2, 1, 0x61]

    static func message(_ records: [[UInt8]]) -> [UInt8] {
        header + [0, UInt8(records.count)] + question + Array(records.joined())
    }

    @Test func aTSIGRecordComesLast() throws {
        #expect(throws: Never.self, "a TSIG alone") { try DNSMessage(wire: Self.message([Self.tsig])) }
        #expect(throws: Never.self, "a TSIG last") { try DNSMessage(wire: Self.message([Self.txt, Self.tsig])) }
        for records in [[Self.tsig, Self.tsig], [Self.tsig, Self.txt], [Self.txt, Self.tsig, Self.tsig, Self.txt]] {
            do {
                _ = try DNSMessage(wire: Self.message(records))
                Issue.record("a TSIG before the last of \(records.count) records was accepted")
            } catch {
                #expect(error.reason.contains("TSIG record before the last record"), "\(error)")
            }
        }
    }
}

/// libldns stops reading a record's RDATA where its type's fields end and reads what is left
/// as the next record; a message whose records it finds elsewhere than RDLENGTH puts them is
/// refused, so that the bytes are the same message to every reader.
@Suite struct RDLengthTests {
    static func message(_ records: [[UInt8]]) -> [UInt8] {
        [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, UInt8(records.count)] + [2, 0x78, 0x78, 0, 0, 1, 0, 1] + Array(records.joined())
    }

    /// An A record (root owner) with the given RDATA.
    static func a(_ rdata: [UInt8]) -> [UInt8] { [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, UInt8(rdata.count)] + rdata }

    @Test func recordsAreWhereTheirRDLengthPutsThem() throws {
        #expect(throws: Never.self) { try DNSMessage(wire: Self.message([Self.a([192, 0, 2, 1]), Self.a([192, 0, 2, 2])])) }
        // Fifteen bytes for an address of four: libldns would read the eleven after it as an A
        // record of its own (here 192.0.2.9), which an RFC 1035 reader skips.
        let hidden = [192, 0, 2, 1] + Self.a([192, 0, 2, 9])
        // And an A record of six bytes alone, whose last two libldns would simply drop.
        for records in [[Self.a(hidden), Self.a([192, 0, 2, 2])], [Self.a([192, 0, 2, 1, 0, 0])]] {
            do {
                let message = try DNSMessage(wire: Self.message(records))
                Issue.record("read as \(message.additionals.count) records")
            } catch {
                #expect(error.reason.contains("RDLENGTH"), "\(error)")
            }
        }
    }
}

@Suite struct TSIGTests {
    let key = TSIGKey(name: "xfr.c.a.xx.", algorithm: "hmac-sha256", secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=")

    @Test func aSignedMessageVerifiesAndATamperedOneDoesNot() throws {
        let query = DNSMessage.query(id: 7, name: "c.a.xx.", type: RRType(rawValue: 252))
        let (wire, mac) = try query.wire(signedWith: key, previousMAC: nil)
        #expect(!mac.isEmpty)
        #expect(key.check(wire) == .valid(mac: mac))
        #expect(try DNSMessage(wire: wire).question == query.question, "the TSIG does not disturb decoding")
        var tampered = wire
        tampered[13] ^= 0x20  // one letter of the name changes case
        guard case .invalid(let reason) = key.check(tampered) else { Issue.record("a tampered message verified"); return }
        #expect(reason.contains("does not verify"))
        let other = TSIGKey(name: "xfr.c.a.xx.", algorithm: "hmac-sha256", secret: "b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXI=")
        #expect(other.check(wire) != .valid(mac: mac))
        #expect(key.check(try query.wire()) == .missing)
        let stale = Date(timeIntervalSinceNow: 3600)
        guard case .invalid(let late) = key.check(wire, now: stale) else { Issue.record("an hour-old signature verified"); return }
        #expect(late.contains("fudge"))
    }
}

/// What admission reads from a query's bytes before decoding them (`WireShape`).
@Suite struct WireShapeTests {
    @Test func aPlainQueryCarriesNoRecordAndItsCookieIsRead() throws {
        var query = DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt)
        #expect(WireShape(wire: try query.wire()) == WireShape(wire: try query.wire()))
        #expect(!WireShape(wire: try query.wire()).carriesRecords)
        #expect(WireShape(wire: try query.wire()).cookie == nil)
        let cookie: [UInt8] = Array(1...24)
        query.edns?.options = [EDNS.Option(code: 8, data: [0, 1, 24, 0, 127, 0, 0]), EDNS.Option(code: 10, data: cookie)]
        let shape = WireShape(wire: try query.wire())
        #expect(!shape.carriesRecords && shape.cookie == cookie)
        #expect(try query.wire().withUnsafeBytes { WireShape(wire: $0) } == shape, "read in place as from a copy")
    }

    @Test func aQueryWithARecordBesidesOPTCarriesIt() throws {
        var query = DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt)
        query.additionals = [ResourceRecord(name: "hosta.b.a.xx.", ttl: 0, data: .txt([Array("kms1:inquiry".utf8)]))]
        query.edns?.options = [EDNS.Option(code: 10, data: Array(1...8))]
        let shape = WireShape(wire: try query.wire())
        #expect(shape.carriesRecords && shape.cookie == Array(1...8))
        var update = DNSMessage.query(id: 2, name: "b.a.xx.", type: .soa)
        update.authorities = [ResourceRecord(name: "hosta.b.a.xx.", ttl: 0, data: .a([127, 0, 0, 1]))]
        #expect(WireShape(wire: try update.wire()).carriesRecords)
    }

    @Test func theQuestionTypeIsReadWhenThereIsOneQuestion() throws {
        #expect(WireShape(wire: try DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt).wire()).questionType == .txt)
        #expect(WireShape(wire: try DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .aaaa).wire()).questionType == .aaaa)
        var two = DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt)
        two.questions.append(Question(name: "hostb.c.a.xx.", type: .txt))
        #expect(WireShape(wire: try two.wire()).questionType == nil)
        let wire = try DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt).wire()
        #expect(WireShape(wire: wire.prefix(12 + 15)).questionType == nil, "the type cut off")
    }

    @Test func bytesThatDoNotWalkCountAsCarrying() throws {
        let wire = try DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt).wire()
        #expect(WireShape(wire: wire.dropLast(3)).carriesRecords, "an OPT cut short")
        #expect(WireShape(wire: Array(wire.prefix(5))).carriesRecords, "shorter than a header")
        var claimsMore = wire
        claimsMore[7] = 1  // ANCOUNT 1, with no record there
        #expect(WireShape(wire: claimsMore).carriesRecords)
    }
}
