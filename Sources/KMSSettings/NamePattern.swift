public import DNSWire

/// A domain name condition of a CUG row (PROTOCOL.md section 6), matched label-wise and
/// ignoring case.
public enum NamePattern: Hashable, Sendable, CustomStringConvertible {
    /// `name.example.`: exactly this name.
    case exact(DomainName)
    /// `sato.*`: first label `sato`, and at least one label after it.
    case firstLabel(String)
    /// `*.myfriends.com`: strictly below `myfriends.com` (not `myfriends.com` itself).
    case suffix(DomainName)
    /// `*.biglobe.*`: any label equal to `biglobe`.
    case anyLabel(String)

    public init?(_ text: String) {
        let lower = text.lowercased()
        if lower.hasPrefix("*.") && lower.hasSuffix(".*") && lower.count > 4 {
            let label = String(lower.dropFirst(2).dropLast(2))
            guard !label.isEmpty, !label.contains("."), !label.contains("*") else { return nil }
            self = .anyLabel(label)
        } else if lower.hasPrefix("*.") {
            let rest = String(lower.dropFirst(2))
            guard !rest.contains("*"), let name = try? DomainName(rest.hasSuffix(".") ? rest : rest + ".") else { return nil }
            self = .suffix(name.lowercased)
        } else if lower.hasSuffix(".*") {
            let label = String(lower.dropLast(2))
            guard !label.isEmpty, !label.contains("."), !label.contains("*") else { return nil }
            self = .firstLabel(label)
        } else {
            guard !lower.contains("*"), let name = try? DomainName(lower.hasSuffix(".") ? lower : lower + ".") else { return nil }
            self = .exact(name.lowercased)
        }
    }

    public func matches(_ name: DomainName) -> Bool {
        switch self {
        case .exact(let exact): return name == exact
        case .suffix(let parent): return name.isSubdomain(of: parent)
        case .firstLabel(let label):
            let labels = name.lowercasedLabels
            return labels.count >= 2 && labels[0] == label
        case .anyLabel(let label):
            return name.lowercasedLabels.contains(label)
        }
    }

    public var description: String {
        switch self {
        case .exact(let name): name.text
        case .firstLabel(let label): "\(label).*"
        case .suffix(let name): "*.\(name.text)"
        case .anyLabel(let label): "*.\(label).*"
        }
    }
}
