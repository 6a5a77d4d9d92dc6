/// A currency code: three upper-case ASCII letters.
///
/// Two ways in: `init(validating:)` accepts only active ISO 4217 currencies that have a minor unit,
/// and is what new input (the command line, an API) goes through. `init?(_:)` accepts any three
/// letters, because stored records keep the codes they were written with, including codes the
/// standard has since withdrawn (a file written with HRK must stay readable).
public struct CurrencyCode: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public let code: String

    /// Accepts three ASCII letters in either case and stores them upper-case; does not consult the
    /// ISO 4217 list (see `init(validating:)`).
    public init?(_ text: String) {
        let letters = Array(text.utf8)
        guard letters.count == 3, letters.allSatisfy({ ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) })
        else {
            return nil
        }
        code = String(decoding: letters.map { $0 >= 97 ? $0 - 32 : $0 }, as: UTF8.self)
    }

    /// Accepts the code of an active ISO 4217 currency that has a minor unit, in either case.
    /// Throws a `ModelError` for anything else: not three letters, not on the list, or a unit
    /// without a minor unit (gold, XDR, XXX, ...), in which no amount of money can be written.
    public init(validating text: String) throws(ModelError) {
        guard let shaped = CurrencyCode(text) else {
            throw ModelError(
                field: "currency", value: text,
                reason: "expected an ISO 4217 currency code of three letters, such as EUR, USD or GBP")
        }
        guard let entry = ISO4217.entry(shaped.code) else {
            throw ModelError(
                field: "currency", value: text,
                reason:
                    "\(shaped.code) is not an active ISO 4217 currency (list of \(ISO4217.published)); use a code such as EUR, USD or GBP"
            )
        }
        guard entry.minorUnitDigits != nil else {
            throw ModelError(
                field: "currency", value: text,
                reason:
                    "\(shaped.code) (\(entry.name)) has no minor unit in ISO 4217, so amounts of money cannot be written in it"
            )
        }
        self = shaped
    }

    public var description: String { code }

    public static func < (lhs: CurrencyCode, rhs: CurrencyCode) -> Bool { lhs.code < rhs.code }

    /// The currency's entry in the ISO 4217 list, or nil for a code that is not (or no longer) on it.
    public var iso4217: ISO4217.Entry? { ISO4217.entry(code) }

    /// Digits after the decimal point in the currency's minor unit, from the ISO 4217 list. A code
    /// that is not on the list, or has no minor unit there, counts as 2, so amounts stored in it
    /// before it was withdrawn keep reading as they were written.
    public var minorUnitDigits: Int { iso4217?.minorUnitDigits ?? 2 }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = CurrencyCode(text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(text)' is not an ISO 4217 currency code such as EUR or USD")
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(code)
    }
}

/// An amount of money in integer minor units (cents for EUR) of one currency.
///
/// JSON form: `{"amount": "12.34", "currency": "EUR"}`; the amount is a decimal string with exactly
/// the currency's number of minor-unit digits, so no precision is ever lost to floating point.
public struct Money: Sendable, Hashable, Codable, CustomStringConvertible {
    public var minorUnits: Int64
    public var currency: CurrencyCode

    public init(minorUnits: Int64, currency: CurrencyCode) {
        self.minorUnits = minorUnits
        self.currency = currency
    }

    /// Parses a decimal amount such as `12.34`, `-5`, or `0.5` in the given currency.
    public init(decimal text: String, currency: CurrencyCode) throws(ModelError) {
        guard let units = DecimalText.parse(text, fractionDigits: currency.minorUnitDigits) else {
            if DecimalText.isWellFormed(text, fractionDigits: currency.minorUnitDigits) {
                throw ModelError(
                    field: "amount", value: text,
                    reason:
                        "out of range: an amount in \(currency) is \(DecimalText.range(fractionDigits: currency.minorUnitDigits))"
                )
            }
            throw ModelError(
                field: "amount", value: text,
                reason:
                    "expected a decimal number with at most \(currency.minorUnitDigits) digits after the point for \(currency), such as \(Money(minorUnits: 1234, currency: currency).decimalString)"
            )
        }
        self.init(minorUnits: units, currency: currency)
    }

    /// The amount as a decimal string with the currency's minor-unit digits, e.g. `12.30`.
    public var decimalString: String {
        DecimalText.format(minorUnits, fractionDigits: currency.minorUnitDigits)
    }

    public var description: String { "\(decimalString) \(currency)" }

    enum CodingKeys: String, CodingKey { case amount, currency }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let currency = try c.decode(CurrencyCode.self, forKey: .currency)
        let text = try c.decode(String.self, forKey: .amount)
        do {
            try self.init(decimal: text, currency: currency)
        } catch {
            throw DecodingError.dataCorruptedError(
                forKey: .amount, in: c, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(decimalString, forKey: .amount)
        try c.encode(currency, forKey: .currency)
    }
}

/// A mass of carbon dioxide equivalent, kept as integer milligrams so sums are exact.
///
/// JSON form: a number of kilograms with up to six decimals, e.g. `12.345`.
public struct CO2e: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milligrams: Int64

    public init(milligrams: Int64) { self.milligrams = milligrams }

    /// Parses kilograms written as a decimal, e.g. `12.345`.
    public init(kilograms text: String) throws(ModelError) {
        guard let mg = DecimalText.parse(text, fractionDigits: 6) else {
            if DecimalText.isWellFormed(text, fractionDigits: 6) {
                throw ModelError(
                    field: "kgCO2e", value: text,
                    reason: "out of range: a mass is \(DecimalText.range(fractionDigits: 6)) kilograms")
            }
            throw ModelError(
                field: "kgCO2e", value: text,
                reason:
                    "expected kilograms as a decimal number with at most 6 digits after the point, such as 12.345"
            )
        }
        self.init(milligrams: mg)
    }

    public var kilogramsString: String { Self.kilograms(milligrams: Int128(milligrams)) }

    /// Kilograms without trailing zeros, e.g. `12.3`, for any number of milligrams, including a sum
    /// of many masses that would overflow `Int64`.
    public static func kilograms(milligrams: Int128) -> String {
        var s = DecimalText.format(wide: milligrams, fractionDigits: 6)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }

    public var description: String { "\(kilogramsString) kg CO2e" }

    public static func < (lhs: CO2e, rhs: CO2e) -> Bool { lhs.milligrams < rhs.milligrams }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Accept a JSON number or a decimal string; both are parsed as exact decimal text.
        let text: String
        if let s = try? container.decode(String.self) {
            text = s
        } else {
            let d = try container.decode(Double.self)
            guard d.isFinite, abs(d) < 9.2e12 else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "kgCO2e \(d) is out of range")
            }
            let scaled = d * 1_000_000
            self.init(milligrams: Int64(scaled + (scaled < 0 ? -0.5 : 0.5)))
            return
        }
        do {
            try self.init(kilograms: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        // A Double prints the shortest form that round-trips, so 6-decimal values come back exactly.
        try container.encode(Double(milligrams) / 1_000_000)
    }
}

/// Exact decimal text <-> scaled integers, without floating point.
public enum DecimalText {
    /// Parses `[-+]digits[.digits]` into an integer scaled by 10^fractionDigits; nil if malformed,
    /// if there are more fraction digits than allowed, or on overflow.
    public static func parse(_ text: String, fractionDigits: Int) -> Int64? {
        var bytes = Substring(text).utf8[...]
        var negative = false
        if let f = bytes.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") {
            negative = f == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var value: Int64 = 0
        var sawDigit = false
        var fraction = -1
        for c in bytes {
            if c == UInt8(ascii: ".") {
                guard fraction < 0 else { return nil }
                fraction = 0
                continue
            }
            guard c >= 48, c <= 57 else { return nil }
            sawDigit = true
            if fraction >= 0 {
                fraction += 1
                guard fraction <= fractionDigits else { return nil }
            }
            // Accumulated as a negative number, whose range includes Int64.min.
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.subtractingReportingOverflow(Int64(c - 48))
            guard !o1, !o2 else { return nil }
            value = a
        }
        guard sawDigit, fraction != 0 else { return nil }
        for _ in 0..<(fractionDigits - max(fraction, 0)) {
            let (m, o) = value.multipliedReportingOverflow(by: 10)
            guard !o else { return nil }
            value = m
        }
        if negative { return value }
        return value == .min ? nil : -value
    }

    /// Whether `text` is written as `parse` wants it (`[-+]digits[.digits]`, at most
    /// `fractionDigits` after the point), whatever its size: when `parse` still answers nil, the
    /// value is out of range.
    public static func isWellFormed(_ text: String, fractionDigits: Int) -> Bool {
        var bytes = Substring(text).utf8[...]
        if let f = bytes.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        let parts = bytes.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
        let isDigits = { (p: Substring.UTF8View.SubSequence) in
            !p.isEmpty && p.allSatisfy { $0 >= 48 && $0 <= 57 }
        }
        guard let whole = parts.first, isDigits(whole) else { return false }
        return parts.count == 1 || (isDigits(parts[1]) && parts[1].count <= fractionDigits)
    }

    /// The values `parse` takes with `fractionDigits`, in words: `from MIN to MAX`.
    public static func range(fractionDigits: Int) -> String {
        "from \(format(.min, fractionDigits: fractionDigits)) to \(format(.max, fractionDigits: fractionDigits))"
    }

    public static func format(_ value: Int64, fractionDigits: Int) -> String {
        format(negative: value < 0, magnitude: value.magnitude, fractionDigits: fractionDigits)
    }

    /// The same for 128-bit values, e.g. a sum of many `Int64` amounts, which cannot overflow it.
    public static func format(wide value: Int128, fractionDigits: Int) -> String {
        format(negative: value < 0, magnitude: value.magnitude, fractionDigits: fractionDigits)
    }

    private static func format(negative: Bool, magnitude: some UnsignedInteger, fractionDigits: Int)
        -> String
    {
        var digits = String(magnitude)
        if fractionDigits > 0 {
            if digits.count <= fractionDigits {
                digits = String(repeating: "0", count: fractionDigits - digits.count + 1) + digits
            }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -fractionDigits))
        }
        return negative ? "-" + digits : digits
    }
}
