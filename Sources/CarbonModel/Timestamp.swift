/// A point in time with millisecond precision, stored as milliseconds since 1970-01-01T00:00:00Z.
///
/// JSON form: an ISO 8601 string in UTC with milliseconds, for example `2026-03-01T09:30:00.000Z`.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var millisecondsSince1970: Int64

    public init(millisecondsSince1970: Int64) {
        self.millisecondsSince1970 = millisecondsSince1970
    }

    /// The earliest and latest instants that have an ISO 8601 form here (years 0001 to 9999).
    public static let earliestISO = Timestamp(millisecondsSince1970: -62_135_596_800_000)
    public static let latestISO = Timestamp(millisecondsSince1970: 253_402_300_799_999)

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSince1970 < rhs.millisecondsSince1970
    }

    public var description: String { iso8601 }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`; instants outside years 0001–9999 print as `@<milliseconds>`.
    public var iso8601: String {
        guard self >= Self.earliestISO, self <= Self.latestISO else { return "@\(millisecondsSince1970)" }
        let ms = millisecondsSince1970
        let days = floorDiv(ms, 86_400_000)
        let msOfDay = ms - days * 86_400_000
        let (y, m, d) = civilFromDays(days)
        let h = msOfDay / 3_600_000
        let mi = (msOfDay / 60_000) % 60
        let s = (msOfDay / 1000) % 60
        let f = msOfDay % 1000
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2)).\(pad(f, 3))Z"
    }

    /// Parses an RFC 3339 date-time alone: `YYYY-MM-DDTHH:MM:SS`, an optional `.fraction`, then `Z`
    /// or `±HH:MM` (`T` and `Z` may be lower case). A date without a time, a time without seconds
    /// or without a zone, `±HHMM` and a comma before the fraction, which `init?(iso8601:)` takes,
    /// are nil here: the HTTP service's contract (a date alone has no zone to read it in).
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        func isDigit(_ k: Int) -> Bool { k < b.count && b[k] >= 48 && b[k] <= 57 }
        func allDigits(_ range: Range<Int>) -> Bool { range.allSatisfy(isDigit) }
        func byte(_ k: Int, _ c: Character) -> Bool { k < b.count && b[k] == c.asciiValue! }
        guard b.count >= 20, allDigits(0..<4), byte(4, "-"), allDigits(5..<7), byte(7, "-"),
            allDigits(8..<10),
            byte(10, "T") || byte(10, "t"), allDigits(11..<13), byte(13, ":"), allDigits(14..<16),
            byte(16, ":"),
            allDigits(17..<19)
        else { return nil }
        var i = 19
        if byte(i, ".") {
            i += 1
            guard isDigit(i) else { return nil }
            while isDigit(i) { i += 1 }
        }
        if byte(i, "Z") || byte(i, "z") {
            i += 1
        } else if byte(i, "+") || byte(i, "-") {
            guard allDigits((i + 1)..<(i + 3)), byte(i + 3, ":"), allDigits((i + 4)..<(i + 6)) else {
                return nil
            }
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        self.init(iso8601: text)
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z` or `±HH:MM`,
    /// or `@<milliseconds since 1970>`. Returns nil for anything else.
    public init?(iso8601 text: String) {
        let b = Array(text.utf8)
        if b.first == UInt8(ascii: "@") {
            guard let v = Int64(String(decoding: b.dropFirst(), as: UTF8.self)) else { return nil }
            self.init(millisecondsSince1970: v)
            return
        }
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            i += n
            return v
        }
        func expect(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let y = digits(4), expect("-"), let mo = digits(2), expect("-"), let d = digits(2) else {
            return nil
        }
        guard y >= 1, (1...12).contains(mo), d >= 1, d <= daysInMonth(y, mo) else { return nil }
        var ms = daysFromCivil(y, mo, d) * 86_400_000
        if i == b.count {
            self.init(millisecondsSince1970: ms)
            return
        }
        guard i < b.count, b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: " ") || b[i] == UInt8(ascii: "t")
        else { return nil }
        i += 1
        guard let h = digits(2), expect(":"), let mi = digits(2), h < 24, mi < 60 else { return nil }
        ms += h * 3_600_000 + mi * 60_000
        if expect(":") {
            guard let s = digits(2), s < 60 else { return nil }
            ms += s * 1000
            if expect(".") || expect(",") {
                var scale: Int64 = 100
                var count = 0
                while i < b.count, b[i] >= 48, b[i] <= 57 {
                    ms += Int64(b[i] - 48) * scale
                    scale /= 10
                    i += 1
                    count += 1
                }
                guard count > 0 else { return nil }
            }
        }
        if expect("Z") || expect("z") {
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign: Int64 = b[i] == UInt8(ascii: "+") ? 1 : -1
            i += 1
            guard let oh = digits(2) else { return nil }
            _ = expect(":")
            guard let om = digits(2), oh < 24, om < 60 else { return nil }
            ms -= sign * (oh * 3_600_000 + om * 60_000)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        self.init(millisecondsSince1970: ms)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Timestamp(iso8601: text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription:
                    "'\(text)' is not an ISO 8601 time; write it like 2026-03-01T09:30:00Z or 2026-03-01T09:30:00.250+01:00"
            )
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(iso8601)
    }
}

@inline(__always) private func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

private func pad(_ v: Int64, _ width: Int) -> String {
    let s = String(v)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

private func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

private func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
    switch m {
    case 2: return isLeap(y) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

// Days from civil date and back, proleptic Gregorian calendar (H. Hinnant's published algorithms).
private func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
    let y = m <= 2 ? y0 - 1 : y0
    let era = floorDiv(y, 400)
    let yoe = y - era * 400
    let mp = (m + 9) % 12
    let doy = (153 * mp + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

private func civilFromDays(_ z0: Int64) -> (Int64, Int64, Int64) {
    let z = z0 + 719_468
    let era = floorDiv(z, 146_097)
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? y + 1 : y, m, d)
}
