public import DNSWire

/// Our extension for deep hierarchies: EDNS option 65003 (private-use range, RFC 6891 section 9)
/// carries, in a request a KMS or host sends upstream, how long the sender will wait for the
/// reply, in milliseconds (4 octets, network order).
///
/// A KMS that receives it waits for its own upstream a fifth less (at least 50 ms less), and
/// passes that on. So the KMS next to a silent one always gives up first and reports it by
/// name, and every KMS on the way back passes that report on before its own wait ends: the
/// SERVFAIL names the KMS that really did not answer, at any depth, whatever the configured
/// time-outs.
public enum TimeBudget {
    public static let optionCode: UInt16 = 65003

    public static func option(milliseconds: UInt32) -> EDNS.Option {
        EDNS.Option(code: optionCode, data: [
            UInt8(milliseconds >> 24), UInt8(milliseconds >> 16 & 0xFF), UInt8(milliseconds >> 8 & 0xFF), UInt8(milliseconds & 0xFF),
        ])
    }

    /// The budget a message carries; nil without the option or with a malformed one.
    public static func milliseconds(in message: DNSMessage) -> UInt32? {
        guard let option = message.edns?.options.first(where: { $0.code == optionCode }), option.data.count == 4 else { return nil }
        return option.data.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// How long to wait upstream, given the budget received (if any) and the configured
    /// time-out: the smaller of the configured time-out and the budget less its margin.
    public static func wait(configured: UInt32, received: UInt32?) -> UInt32 {
        guard let received else { return configured }
        let margin = max(50, received / 5)
        return min(configured, received > margin ? received - margin : received / 2)
    }
}
