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
        #expect(try DomainName(canonical: "_kms1.host-b_2.c.a.xx.").text == "_kms1.host-b_2.c.a.xx.")
        #expect(try DomainName(canonical: ".") == DomainName.root)
        for bad in ["hostb.c.a.xx", "HostB.c.a.xx.", "host\\066.xx.", "a..b.", "", ".a.", "a.b..", "..", String(repeating: "x", count: 64) + "."] {
            #expect(throws: WireError.self, "\(bad)") { try DomainName(canonical: bad) }
        }
    }

    /// Names of plain labels print from their bytes, the rest through libldns: both ways give
    /// what libldns prints, escapes and all.
    @Test func namesPrintAsLibldnsPrintsThem() throws {
        let plain = ["HostA.B.a.xx.", "_kms1.host-b_2.c.a.xx.", "x.", "0-9.A_Z.", String(repeating: "a", count: 63) + ".b."]
        let escaped = [".", "a\\.b.xx.", "sp\\032ace.xx.", "\\000.xx.", "semi\\;colon.", "at\\@.", "quo\\\".te.", "*.wild.xx.", "\\255ff."]
        for text in plain + escaped {
            let name = try DomainName(text)
            #expect(name.text == name.ldnsText, "\(text)")
        }
        for text in plain { #expect(try DomainName(text).text == text) }
        #expect(DomainName("a\\.b.xx.").text == "a\\.b.xx.")
        #expect(DomainName("a\\.b.xx.").labelCount == 2)
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

/// `isSubdomain` and `parent` walk the wire form themselves (they run for every request): the
/// label boundaries, case and the root must come out as libldns had them.
@Suite struct NameRelationTests {
    @Test func subdomainsFollowLabelsNotBytes() throws {
        #expect(DomainName("hostb.c.a.xx.").isSubdomain(of: "xx."))
        #expect(DomainName("HostB.C.A.XX.").isSubdomain(of: "c.a.xx."), "case does not matter")
        #expect(DomainName("c.a.xx.").isSubdomain(of: "C.A.xx.") == false, "a name is not below itself")
        #expect(DomainName("axx.").isSubdomain(of: "xx.") == false, "xx. is a suffix of the bytes, not of the labels")
        #expect(DomainName("b.axx.").isSubdomain(of: "xx.") == false)
        #expect(DomainName("xx.").isSubdomain(of: .root))
        #expect(DomainName.root.isSubdomain(of: .root) == false)
        #expect(DomainName("xx.").isSubdomain(of: "hostb.c.a.xx.") == false)
        // A label whose bytes look like a length and a label of the ancestor.
        let tricky = DomainName("\\003xx\\000.a.")
        #expect(tricky.isSubdomain(of: "a."))
        #expect(tricky.isSubdomain(of: "xx.") == false)
    }

    @Test func parentsDropOneLabel() {
        #expect(DomainName("hostb.c.a.xx.").parent == "c.a.xx.")
        #expect(DomainName("xx.").parent == .root)
        #expect(DomainName.root.parent == nil)
        #expect(DomainName("HostB.C.a.xx.").parent?.wire == DomainName("C.a.xx.").wire, "the case is kept")
    }
}
