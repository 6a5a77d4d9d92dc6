/// Small helpers the engine's files share: one copy of each.

let hexDigits = Array("0123456789abcdef".utf8)

/// Lower-case hex of bytes, two digits each.
func hexString<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for b in bytes {
        out.append(hexDigits[Int(b >> 4)])
        out.append(hexDigits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Lower-case hex of an unsigned integer, zero-padded to its full width.
func hexString<T: FixedWidthInteger & UnsignedInteger>(_ value: T) -> String {
    hexString((0..<(T.bitWidth / 8)).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) })
}

extension Duration {
    /// Whole nanoseconds, saturating at Int64.max.
    package var nanoseconds: Int64 {
        let (s, a) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (s < 0 ? Int64.min : Int64.max) : ns + a / 1_000_000_000
    }

    /// Whole milliseconds, saturating.
    package var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
