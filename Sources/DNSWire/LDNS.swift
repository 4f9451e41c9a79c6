internal import CLDNS
import Glibc

/// Small helpers around libldns's C conventions, used only inside this module.
typealias LDNSPacket = UnsafeMutablePointer<ldns_pkt>
typealias LDNSRecord = UnsafeMutablePointer<ldns_rr>
typealias LDNSData = UnsafeMutablePointer<ldns_rdf>

enum LDNS {
    /// Copies an rdf's bytes.
    static func bytes(of rdf: LDNSData) -> [UInt8] {
        let size = ldns_rdf_size(rdf)
        guard size > 0, let data = ldns_rdf_data(rdf) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// Lends `wire` to libldns as a name rdf without copying it.
    static func withName<T>(_ wire: [UInt8], _ body: (LDNSData) -> T) -> T {
        var bytes = wire
        return bytes.withUnsafeMutableBytes { buffer in
            let rdf = ldns_rdf_new(LDNS_RDF_TYPE_DNAME, buffer.count, buffer.baseAddress)!
            defer { ldns_rdf_free(rdf) }  // frees the struct only, not the lent bytes
            return body(rdf)
        }
    }

    /// Takes ownership of a malloc'ed C string.
    static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
        guard let pointer else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    static func errorString(_ status: ldns_status) -> String {
        String(cString: ldns_get_errorstr_by_id(status))
    }
}

extension Bool {
    /// libldns's `bool` is a `signed char`.
    var ldns: Int8 { self ? 1 : 0 }
}
