import Testing

@testable import DNSWire

@Suite struct DomainNameTests {
    @Test func comparesIgnoringCaseButKeepsIt() {
        let mixed = DomainName("HostA.B.a.xx.")
        #expect(mixed == DomainName("hosta.b.a.xx."))
        #expect(mixed.text == "HostA.B.a.xx.")
        #expect(!mixed.isLowerCase)
        #expect(mixed.lowercased.text == "hosta.b.a.xx.")
        #expect(mixed.canonicalWire == [5] + Array("hosta".utf8) + [1, 0x62, 1, 0x61, 2, 0x78, 0x78, 0])
    }

    @Test func canonicalFormIsRequiredWhereAsked() throws {
        #expect(try DomainName(canonical: "hostb.c.a.xx.").text == "hostb.c.a.xx.")
        for bad in ["hostb.c.a.xx", "HostB.c.a.xx.", "host\\066.xx.", "a..b.", ""] {
            #expect(throws: WireError.self, "\(bad)") { try DomainName(canonical: bad) }
        }
    }

    @Test func hierarchy() {
        let host: DomainName = "hostb.c.a.xx."
        #expect(host.isSubdomain(of: "a.xx."))
        #expect(host.isSubdomain(of: "xx."))
        #expect(host.isSubdomain(of: .root))
        #expect(!host.isSubdomain(of: "b.a.xx."))
        #expect(!DomainName("a.xx.").isSubdomain(of: "a.xx."))
        #expect(DomainName("a.xx.").isEqualOrSubdomain(of: "A.XX."))
        #expect(!DomainName("xa.xx.").isSubdomain(of: "a.xx."))
        #expect(host.labelCount == 4)
        #expect(host.parent == "c.a.xx.")
        #expect(DomainName.root.parent == nil)
    }

    @Test func addressesAreCanonical() {
        #expect(IPAddress(canonical: "127.0.0.11") != nil)
        #expect(IPAddress(canonical: "2001:db8::1") != nil)
        #expect(IPAddress(canonical: "2001:DB8::1") == nil)
        #expect(IPAddress(canonical: "2001:db8:0:0:0:0:0:1") == nil)
        #expect(IPAddress(canonical: "127.000.0.11") == nil)
        #expect(IPAddress("2001:DB8:0::1")?.description == "2001:db8::1")
    }
}
