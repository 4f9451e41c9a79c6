import DNSWire
import KMSCrypto
import Testing

@testable import KMSProtocol

/// Every record kind through DNS wire and back, and each way a record is refused.
@Suite struct RecordTests {
    let host = try! PrivateKey(generating: .ed25519)
    let kms = try! PrivateKey(generating: .ed25519)
    let hostB = try! PrivateKey(generating: .p256)
    let nonce = try! Nonce.random()

    func countersignature() throws -> Countersignature {
        try Countersignature.issue(
            target: "hostb.c.a.xx.", key: hostB.publicKey, signer: "xx.", signerKey: kms,
            notBefore: 1_790_000_000, notAfter: 1_790_086_400)
    }

    /// Sends `record` in the section its tag belongs to and reads it back from the wire.
    func throughWire(_ record: KMSRecord) throws -> KMSRecord? {
        let query = DNSMessage.kmsQuery(id: 9, target: "hostb.c.a.xx.", record: record)
        let message: DNSMessage
        switch record.tag.section {
        case .additional: message = query
        case .answer:
            var response = DNSMessage.query(id: 9, name: "hostb.c.a.xx.", type: .txt).response()
            response.answers = [record.resourceRecord(ttl: 60)]
            message = response
        case .authority:
            var response = DNSMessage.query(id: 9, name: "hostb.c.a.xx.", type: .txt).response(rcode: .nameError)
            response.authorities = [record.resourceRecord()]
            message = response
        }
        return try DNSMessage(wire: message.wire()).kmsRecord()
    }

    @Test func inquiryRoundTrip() throws {
        let inquiry = Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("::1")!, from: "hosta.b.a.xx.", nonce: nonce,
            time: 1_790_000_000)
        let sent = try inquiry.record().signed(by: host)
        let received = try #require(try throughWire(sent))
        #expect(received == sent)
        #expect(try Inquiry(received) == inquiry)
        try received.verifySignature(by: host.publicKey, signer: inquiry.from)
    }

    @Test func signatureRequestRoundTrip() throws {
        let request = SignatureRequest(
            target: "hostb.c.a.xx.", key: hostB.publicKey, signer: "xx.", ip: IPAddress("127.0.0.2")!,
            from: "a.xx.", nonce: nonce, time: 1_790_000_001)
        let sent = try request.record().signed(by: kms)
        let received = try #require(try throughWire(sent))
        #expect(try SignatureRequest(received) == request)
        try received.verifySignature(by: kms.publicKey, signer: "a.xx.")
    }

    @Test(arguments: [KeyAnswer.Kind.answer, .countersignature])
    func keyAnswerRoundTrip(_ kind: KeyAnswer.Kind) throws {
        let answer = KeyAnswer(
            kind: kind, countersignature: try countersignature(), from: "b.a.xx.", nonce: nonce, time: 1_790_000_002)
        let sent = try answer.record().signed(by: kms)
        let received = try #require(try throughWire(sent))
        #expect(try KeyAnswer(received) == answer)
        try KeyAnswer(received).countersignature.verify(by: kms.publicKey)
    }

    @Test func unresolvedRoundTrip() throws {
        let unresolved = Unresolved(target: "nobody.c.a.xx.", from: "c.a.xx.", nonce: .empty, time: 1_790_000_003)
        let sent = try unresolved.record().signed(by: kms)
        let received = try #require(try throughWire(sent))
        #expect(try Unresolved(received) == unresolved)
        #expect(received.value("nonce") == "")
    }

    @Test func ordinaryTXTIsNotAKMSRecord() throws {
        #expect(try KMSRecord(owner: "xx.", strings: [Array("v=spf1 -all".utf8)]) == nil)
        var response = DNSMessage.query(id: 1, name: "xx.", type: .txt).response()
        response.answers = [ResourceRecord(name: "xx.", ttl: 1, data: .txt([Array("hello".utf8)]))]
        #expect(try DNSMessage(wire: response.wire()).kmsRecord() == nil)
    }

    @Test func hostAcceptsOnlyAFullyVerifiedAnswer() throws {
        let answer = KeyAnswer(
            kind: .answer, countersignature: try countersignature(), from: "b.a.xx.", nonce: nonce, time: 1)
        let record = try answer.record().signed(by: kms)
        let policy = AnswerVerification(
            reply: ReplyCheck(responder: "b.a.xx.", responderKey: kms.publicKey, target: "hostb.c.a.xx.", nonce: nonce),
            signer: "xx.", signerKey: kms.publicKey)
        #expect(try policy.verify(record, now: 1_790_000_100).key == hostB.publicKey)

        func rejection(_ now: UnixTime = 1_790_000_100, _ change: (inout AnswerVerification) -> Void)
            -> ProtocolError.Code?
        {
            var modified = policy
            change(&modified)
            do {
                _ = try modified.verify(record, now: now)
                return nil
            } catch { return error.code }
        }
        #expect(rejection { $0.reply.responderKey = host.publicKey } == .badSignature)
        #expect(rejection { $0.reply.responder = "c.a.xx." } == .responderMismatch)
        #expect(rejection { $0.reply.nonce = try! Nonce.random() } == .nonceMismatch)
        #expect(rejection { $0.signer = "a.xx." } == .signerMismatch)
        #expect(rejection { $0.reply.target = "hostc.c.a.xx." } == .targetMismatch)
        #expect(rejection { $0.signerKey = host.publicKey } == .badCountersignature)
        #expect(rejection(1_789_999_999) { _ in } == .notYetValid)
        #expect(rejection(1_790_086_401) { _ in } == .expired)
    }
}

/// Each malformed record gets its own error.
@Suite struct RejectionTests {
    let key = try! PrivateKey(generating: .ed25519)

    func strings(_ list: [String]) -> [[UInt8]] { list.map { Array($0.utf8) } }

    func inquiryStrings(target: String = "hostb.c.a.xx.", sig: String? = "sig=AAAA") -> [String] {
        ["kms1:inquiry", "target=\(target)", "signer=xx.", "ip=127.0.0.1", "from=hosta.b.a.xx.", "nonce=", "time=1"]
            + (sig.map { [$0] } ?? [])
    }

    func code(_ body: () throws -> Void) -> ProtocolError.Code? {
        do {
            try body()
            return nil
        } catch let error as ProtocolError {
            return error.code
        } catch {
            return nil
        }
    }

    @Test func nonCanonicalNameValue() {
        for target in ["HostB.c.a.xx.", "hostb.c.a.xx", "host\\098.xx."] {
            let result = code {
                let record = try KMSRecord(owner: "hosta.b.a.xx.", strings: strings(inquiryStrings(target: target)))!
                _ = try Inquiry(record)
            }
            #expect(result == .nonCanonicalName, "\(target)")
        }
    }

    @Test func missingSignature() {
        #expect(code { _ = try KMSRecord(owner: "hosta.b.a.xx.", strings: strings(inquiryStrings(sig: nil))) } == .missingSignature)
    }

    @Test func unknownTag() {
        #expect(code { _ = try KMSRecord(owner: "x.", strings: strings(["kms1:gossip", "sig=AAAA"])) } == .unknownTag)
    }

    @Test func fieldsOutOfOrderOrMissing() {
        var swapped = inquiryStrings()
        swapped.swapAt(1, 2)
        #expect(code { _ = try KMSRecord(owner: "hosta.b.a.xx.", strings: strings(swapped)) } == .unexpectedField)
        var short = inquiryStrings()
        short.remove(at: 6)
        #expect(code { _ = try KMSRecord(owner: "hosta.b.a.xx.", strings: strings(short)) } == .missingField)
    }

    @Test func stringOver255Bytes() {
        let long = String(repeating: String(repeating: "a", count: 61) + ".", count: 4) + "xx."
        #expect(code {
            _ = try Inquiry(
                target: try DomainName(long), signer: "xx.", ip: IPAddress("127.0.0.1")!, from: "h.xx.", nonce: .empty,
                time: 1
            ).record()
        } == .stringTooLong)
    }

    @Test func badBase64() {
        for sig in ["sig=AAA", "sig=A===", "sig=AB$C", "sig=QUJD\n"] {
            #expect(code { _ = try KMSRecord(owner: "hosta.b.a.xx.", strings: strings(inquiryStrings(sig: sig))) } == .badBase64, "\(sig)")
        }
        var badNonce = inquiryStrings()
        badNonce[5] = "nonce=AAECAwQFBgcICQoLDA0ODw"  // no padding
        #expect(code { _ = try Inquiry(KMSRecord(owner: "hosta.b.a.xx.", strings: strings(badNonce))!) } == .badBase64)
        var shortNonce = inquiryStrings()
        shortNonce[5] = "nonce=AAEC"
        #expect(code { _ = try Inquiry(KMSRecord(owner: "hosta.b.a.xx.", strings: strings(shortNonce))!) } == .badNonce)
    }

    @Test func keyLabelThatDoesNotMatchTheKey() throws {
        let p256 = try PrivateKey(generating: .p256).publicKey
        let mislabelled = "ed25519:" + Base64.encode(p256.subjectPublicKeyInfo)
        #expect(code { _ = try KeyField.decode(mislabelled) } == .keyLabelMismatch)
        #expect(code { _ = try KeyField.decode("rsa:" + Base64.encode(p256.subjectPublicKeyInfo)) } == .badKey)
        #expect(code { _ = try KeyField.decode("p256:AAAA") } == .badKey)
    }

    @Test func signatureByTheWrongKey() throws {
        let record = try Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.1")!, from: "hosta.b.a.xx.", nonce: .empty,
            time: 1
        ).record().signed(by: key)
        let other = try PrivateKey(generating: .ed25519)
        #expect(code { try record.verifySignature(by: other.publicKey, signer: "hosta.b.a.xx.") } == .badSignature)
        // A changed string breaks the signature too.
        var changed = record.strings
        changed[6] = Array("time=2".utf8)
        let tampered = try #require(try KMSRecord(owner: "hosta.b.a.xx.", strings: changed))
        #expect(code { try tampered.verifySignature(by: key.publicKey, signer: "hosta.b.a.xx.") } == .badSignature)
    }

    @Test func ownerMustBeTheSender() throws {
        let record = try #require(try KMSRecord(owner: "evil.b.a.xx.", strings: strings(inquiryStrings())))
        #expect(code { _ = try Inquiry(record) } == .ownerMismatch)
    }

    @Test func truncatedPacket() throws {
        let record = try Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.1")!, from: "hosta.b.a.xx.", nonce: .empty,
            time: 1
        ).record().signed(by: key)
        let wire = try DNSMessage.kmsQuery(id: 1, target: "hostb.c.a.xx.", record: record).wire()
        #expect(throws: WireError.self) { try DNSMessage(wire: wire.dropLast(10)) }
    }

    @Test func nameCompressionLoop() {
        let loop: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 16, 0, 1]
        #expect(throws: WireError.self) { try DNSMessage(wire: loop) }
    }

    @Test func wrongSection() throws {
        let record = try Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.1")!, from: "hosta.b.a.xx.", nonce: .empty,
            time: 1
        ).record().signed(by: key)
        var message = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .txt)
        message.answers = [record.resourceRecord()]
        let decoded = try DNSMessage(wire: message.wire())
        #expect(code { _ = try decoded.kmsRecord() } == .wrongSection)
        // An inquiry in a response is also out of place.
        var response = DNSMessage.kmsQuery(id: 1, target: "hostb.c.a.xx.", record: record)
        response.header.isResponse = true
        #expect(code { _ = try DNSMessage(wire: response.wire()).kmsRecord() } == .wrongSection)
        // Two KMS records in one message.
        var twice = DNSMessage.kmsQuery(id: 1, target: "hostb.c.a.xx.", record: record)
        twice.additionals.append(record.resourceRecord())
        #expect(code { _ = try DNSMessage(wire: twice.wire()).kmsRecord() } == .multipleRecords)
    }
}

@Suite struct TimeBudgetTests {
    @Test func theOptionRoundTripsAndAMalformedOneIsIgnored() throws {
        var message = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .txt)
        message.edns?.options.append(TimeBudget.option(milliseconds: 2500))
        #expect(TimeBudget.milliseconds(in: try DNSMessage(wire: try message.wire())) == 2500)
        message.edns?.options = [EDNS.Option(code: TimeBudget.optionCode, data: [1, 2, 3])]
        #expect(TimeBudget.milliseconds(in: message) == nil)
    }

    @Test func eachHopWaitsLessThanTheOneBefore() {
        #expect(TimeBudget.wait(configured: 2000, received: nil) == 2000)
        #expect(TimeBudget.wait(configured: 2000, received: 5000) == 2000)
        #expect(TimeBudget.wait(configured: 2000, received: 2000) == 1600)
        #expect(TimeBudget.wait(configured: 2000, received: 100) == 50, "at least 50 ms of margin")
        #expect(TimeBudget.wait(configured: 2000, received: 40) == 20, "a budget under the margin: half of it")
        // Down a chain of equal time-outs the waits shrink strictly.
        var budget: UInt32 = 2000
        for _ in 0..<5 {
            let next = TimeBudget.wait(configured: 2000, received: budget)
            #expect(next < budget)
            budget = next
        }
    }
}

@Suite struct StaticOwnerTests {
    @Test func theOwnerLabelIsMatchedWholeAndCaseInsensitively() throws {
        #expect(StaticCountersignature.target(ofOwner: "_kms1.hostb.c.a.xx.") == "hostb.c.a.xx.")
        #expect(StaticCountersignature.target(ofOwner: "_KMS1.HostB.c.a.xx.") == "hostb.c.a.xx.")
        #expect(StaticCountersignature.target(ofOwner: "_kms10.hostb.c.a.xx.") == nil)
        #expect(StaticCountersignature.target(ofOwner: "x._kms1.hostb.c.a.xx.") == nil)
        #expect(StaticCountersignature.target(ofOwner: "hostb.c.a.xx.") == nil)
        #expect(StaticCountersignature.owner(of: "hostb.c.a.xx.") == "_kms1.hostb.c.a.xx.")
    }
}
