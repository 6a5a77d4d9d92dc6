/// A closed time range `[start, end)`, e.g. the month a footprint or saving is reported for.
public struct Period: Sendable, Hashable, Codable, CustomStringConvertible {
    public var start: Timestamp
    public var end: Timestamp

    public init(start: Timestamp, end: Timestamp) {
        self.start = start
        self.end = end
    }

    public var description: String { "\(start)/\(end)" }
}

/// One card or bank transaction. `id` is chosen by the client and unique per user, so adding the
/// same transaction twice is harmless.
public struct Transaction: Sendable, Hashable, Codable, Identifiable {
    public var id: String
    public var time: Timestamp
    public var amount: Money
    public var merchant: String?
    /// Merchant category code (ISO 18245), 0 to 9999.
    public var mcc: UInt16?
    public var category: String?
    public var description: String?
    public var accountID: String?
    /// Keys and values are compared byte for byte: `"\u{E9}"` and `"e\u{301}"` are two keys.
    public var metadata: ExactDictionary<String>

    public init(
        id: String, time: Timestamp, amount: Money, merchant: String? = nil, mcc: UInt16? = nil,
        category: String? = nil, description: String? = nil, accountID: String? = nil,
        metadata: ExactDictionary<String> = [:]
    ) {
        self.id = id
        self.time = time
        self.amount = amount
        self.merchant = merchant
        self.mcc = mcc
        self.category = category
        self.description = description
        self.accountID = accountID
        self.metadata = metadata
    }

    enum CodingKeys: String, CodingKey {
        case id, time, amount, merchant, mcc, category, description, accountID = "accountId", metadata
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        time = try c.decode(Timestamp.self, forKey: .time)
        amount = try c.decode(Money.self, forKey: .amount)
        merchant = try c.decodeIfPresent(String.self, forKey: .merchant)
        mcc = try c.decodeIfPresent(UInt16.self, forKey: .mcc)
        if let mcc, mcc > 9999 {
            throw DecodingError.dataCorruptedError(
                forKey: .mcc, in: c, debugDescription: "merchant category code \(mcc) is not 0...9999")
        }
        category = try c.decodeIfPresent(String.self, forKey: .category)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        accountID = try c.decodeIfPresent(String.self, forKey: .accountID)
        metadata = try c.decodeIfPresent(ExactDictionary<String>.self, forKey: .metadata) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(time, forKey: .time)
        try c.encode(amount, forKey: .amount)
        try c.encodeIfPresent(merchant, forKey: .merchant)
        try c.encodeIfPresent(mcc, forKey: .mcc)
        try c.encodeIfPresent(category, forKey: .category)
        try c.encodeIfPresent(description, forKey: .description)
        try c.encodeIfPresent(accountID, forKey: .accountID)
        if !metadata.isEmpty { try c.encode(metadata, forKey: .metadata) }
    }
}

/// An answer to a question: free text, a number, yes/no, or a list of chosen options.
///
/// JSON form: the plain JSON value (`"text"`, `3.5`, `-0`, `true`, `["a", "b"]`), except for the
/// numbers JSON cannot write: `{"number": "Infinity"}`, `{"number": "-Infinity"}` and
/// `{"number": "NaN", "bits": "0x7ff8000000000000"}`, whose `bits` (16 hex digits) keep the NaN's
/// sign and payload. An object, so never taken for a text answer. See docs/FORMAT.md, "JSON form".
public enum Answer: Sendable, Hashable, Codable, CustomStringConvertible {
    case text(String)
    case number(Double)
    case boolean(Bool)
    case choices([String])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .boolean(b)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d)
        } else if let s = try? c.decode(String.self) {
            self = .text(s)
        } else if let a = try? c.decode([String].self) {
            self = .choices(a)
        } else if let keyed = try? decoder.container(keyedBy: NonFiniteKey.self), keyed.contains(.number) {
            self = .number(try Self.nonFinite(keyed))
        } else {
            throw DecodingError.dataCorruptedError(
                in: c,
                debugDescription:
                    "an answer is a string, a number, {\"number\": \"NaN\"|\"Infinity\"|\"-Infinity\"}, true/false, or a list of strings"
            )
        }
    }

    /// The keys of the JSON form of a non-finite number (any key decodes, so that others are refused).
    struct NonFiniteKey: CodingKey, Equatable {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        static let number = NonFiniteKey(stringValue: "number")
        static let bits = NonFiniteKey(stringValue: "bits")
    }

    /// Reads `{"number": "NaN", "bits": "0x..."}`, `{"number": "Infinity"}` or `{"number": "-Infinity"}`.
    static func nonFinite(_ c: KeyedDecodingContainer<NonFiniteKey>) throws -> Double {
        if let other = c.allKeys.first(where: { $0 != .number && $0 != .bits }) {
            throw DecodingError.dataCorruptedError(
                forKey: other, in: c, debugDescription: "a non-finite number has only 'number' and 'bits'")
        }
        let name = try c.decode(String.self, forKey: .number)
        let bits = try c.decodeIfPresent(String.self, forKey: .bits)
        let value: Double
        switch name {
        case "Infinity": value = .infinity
        case "-Infinity": value = -.infinity
        case "NaN":
            guard let bits else { return .nan }
            let digits = bits.hasPrefix("0x") || bits.hasPrefix("0X") ? bits.dropFirst(2) : Substring(bits)
            guard digits.count == 16, let pattern = UInt64(digits, radix: 16),
                Double(bitPattern: pattern).isNaN
            else {
                throw DecodingError.dataCorruptedError(
                    forKey: .bits, in: c,
                    debugDescription: "'\(bits)' is not the 16 hex digits of a NaN (e.g. 0x7ff8000000000000)")
            }
            return Double(bitPattern: pattern)
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .number, in: c,
                debugDescription:
                    "'\(name)' is not NaN, Infinity or -Infinity (finite numbers are plain JSON numbers)")
        }
        guard bits == nil else {
            throw DecodingError.dataCorruptedError(
                forKey: .bits, in: c, debugDescription: "only a NaN carries bits")
        }
        return value
    }

    /// `0x` and the 16 lower-case hex digits of `d`'s bit pattern.
    static func hexBits(_ d: Double) -> String {
        let digits = String(d.bitPattern, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .number(let d) where !d.isFinite:
            var c = encoder.container(keyedBy: NonFiniteKey.self)
            if d.isNaN {
                try c.encode("NaN", forKey: .number)
                try c.encode(Self.hexBits(d), forKey: .bits)
            } else {
                try c.encode(d > 0 ? "Infinity" : "-Infinity", forKey: .number)
            }
            return
        default: break
        }
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let s): try c.encode(s)
        case .number(let d): try c.encode(d)
        case .boolean(let b): try c.encode(b)
        case .choices(let a): try c.encode(a)
        }
    }

    /// Reads an answer typed on a command line: `true`/`false`, a number, `a,b,c` with `choices`,
    /// anything else as text.
    public static func parse(_ text: String, asChoices: Bool = false) -> Answer {
        if asChoices { return .choices(text.split(separator: ",").map(String.init)) }
        if text == "true" { return .boolean(true) }
        if text == "false" { return .boolean(false) }
        if let d = Double(text), d.isFinite { return .number(d) }
        return .text(text)
    }

    public var description: String {
        switch self {
        case .text(let s): return s
        case .number(let d): return String(d)
        case .boolean(let b): return String(b)
        case .choices(let a): return a.joined(separator: ",")
        }
    }
}

/// The latest answer a user gave to one question.
public struct QuestionResponse: Sendable, Hashable, Codable {
    public var questionID: String
    public var answer: Answer
    public var answeredAt: Timestamp

    public init(questionID: String, answer: Answer, answeredAt: Timestamp) {
        self.questionID = questionID
        self.answer = answer
        self.answeredAt = answeredAt
    }

    enum CodingKeys: String, CodingKey { case questionID = "questionId", answer, answeredAt }
}

/// The value of one account preference and when it was last set.
public struct Preference: Sendable, Hashable, Codable {
    public var value: String
    public var updatedAt: Timestamp

    public init(value: String, updatedAt: Timestamp) {
        self.value = value
        self.updatedAt = updatedAt
    }
}

/// A footprint the engine calculated, for one transaction or for a period.
public struct Footprint: Sendable, Hashable, Codable, Identifiable {
    public var id: String
    public var transactionID: String?
    public var period: Period?
    public var co2e: CO2e
    public var category: String
    /// Methodology and version, e.g. `ghg-spend-v3.2`.
    public var methodology: String
    public var calculatedAt: Timestamp

    public init(
        id: String, transactionID: String? = nil, period: Period? = nil, co2e: CO2e, category: String,
        methodology: String, calculatedAt: Timestamp
    ) {
        self.id = id
        self.transactionID = transactionID
        self.period = period
        self.co2e = co2e
        self.category = category
        self.methodology = methodology
        self.calculatedAt = calculatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, transactionID = "transactionId", period, co2e = "kgCO2e", category, methodology, calculatedAt
    }
}

/// A saving the user achieved by an action, over a period.
public struct Saving: Sendable, Hashable, Codable, Identifiable {
    public var id: String
    public var actionID: String
    public var co2e: CO2e
    public var moneySaved: Money?
    public var period: Period
    public var recordedAt: Timestamp

    public init(
        id: String, actionID: String, co2e: CO2e, moneySaved: Money? = nil, period: Period,
        recordedAt: Timestamp
    ) {
        self.id = id
        self.actionID = actionID
        self.co2e = co2e
        self.moneySaved = moneySaved
        self.period = period
        self.recordedAt = recordedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, actionID = "actionId", co2e = "kgCO2e", moneySaved, period, recordedAt
    }
}

/// A section of a user file written by a newer version that this version does not understand.
/// It is kept byte for byte and written back, so an older writer never drops a newer writer's data.
public struct PreservedSection: Sendable, Hashable {
    public var tag: UInt16
    public var flags: UInt16
    public var payload: [UInt8]

    public init(tag: UInt16, flags: UInt16, payload: [UInt8]) {
        self.tag = tag
        self.flags = flags
        self.payload = payload
    }
}

// MARK: - Byte-exact equality
//
// Swift's synthesized `==` compares strings by canonical equivalence, so a record whose only
// change is an NFC spelling replaced by an NFD one would compare equal to the old one, and the
// store would skip the write. These compare every string by its UTF-8 bytes and every number by
// its bits (so NaN equals the same NaN, and -0.0 differs from 0.0), as the file format stores them.

extension Transaction: ExactlyEquatable {
    public static func == (a: Transaction, b: Transaction) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to b: Transaction) -> Bool {
        time == b.time && amount == b.amount && mcc == b.mcc && id.isByteEqual(to: b.id)
            && merchant.isByteEqual(to: b.merchant) && category.isByteEqual(to: b.category)
            && description.isByteEqual(to: b.description) && accountID.isByteEqual(to: b.accountID)
            && metadata == b.metadata
    }

    public func hashExactly(into hasher: inout Hasher) {
        id.hashBytes(into: &hasher)
        hasher.combine(time)
        hasher.combine(amount)
        merchant.hashBytes(into: &hasher)
        hasher.combine(mcc)
        category.hashBytes(into: &hasher)
        description.hashBytes(into: &hasher)
        accountID.hashBytes(into: &hasher)
        metadata.hashExactly(into: &hasher)
    }
}

extension Answer: ExactlyEquatable {
    public static func == (a: Answer, b: Answer) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to other: Answer) -> Bool {
        switch (self, other) {
        case (.text(let a), .text(let b)): return a.isByteEqual(to: b)
        case (.number(let a), .number(let b)): return a.bitPattern == b.bitPattern
        case (.boolean(let a), .boolean(let b)): return a == b
        case (.choices(let a), .choices(let b)): return a.isByteEqual(to: b)
        default: return false
        }
    }

    public func hashExactly(into hasher: inout Hasher) {
        switch self {
        case .text(let s):
            hasher.combine(0)
            s.hashBytes(into: &hasher)
        case .number(let d):
            hasher.combine(1)
            hasher.combine(d.bitPattern)
        case .boolean(let b):
            hasher.combine(2)
            hasher.combine(b)
        case .choices(let a):
            hasher.combine(3)
            a.hashBytes(into: &hasher)
        }
    }
}

extension QuestionResponse: ExactlyEquatable {
    public static func == (a: QuestionResponse, b: QuestionResponse) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to b: QuestionResponse) -> Bool {
        answeredAt == b.answeredAt && questionID.isByteEqual(to: b.questionID) && answer == b.answer
    }

    public func hashExactly(into hasher: inout Hasher) {
        questionID.hashBytes(into: &hasher)
        answer.hashExactly(into: &hasher)
        hasher.combine(answeredAt)
    }
}

extension Preference: ExactlyEquatable {
    public static func == (a: Preference, b: Preference) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to b: Preference) -> Bool {
        updatedAt == b.updatedAt && value.isByteEqual(to: b.value)
    }

    public func hashExactly(into hasher: inout Hasher) {
        value.hashBytes(into: &hasher)
        hasher.combine(updatedAt)
    }
}

extension Footprint: ExactlyEquatable {
    public static func == (a: Footprint, b: Footprint) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to b: Footprint) -> Bool {
        co2e == b.co2e && period == b.period && calculatedAt == b.calculatedAt && id.isByteEqual(to: b.id)
            && transactionID.isByteEqual(to: b.transactionID) && category.isByteEqual(to: b.category)
            && methodology.isByteEqual(to: b.methodology)
    }

    public func hashExactly(into hasher: inout Hasher) {
        id.hashBytes(into: &hasher)
        transactionID.hashBytes(into: &hasher)
        hasher.combine(period)
        hasher.combine(co2e)
        category.hashBytes(into: &hasher)
        methodology.hashBytes(into: &hasher)
        hasher.combine(calculatedAt)
    }
}

extension Saving: ExactlyEquatable {
    public static func == (a: Saving, b: Saving) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to b: Saving) -> Bool {
        co2e == b.co2e && moneySaved == b.moneySaved && period == b.period && recordedAt == b.recordedAt
            && id.isByteEqual(to: b.id) && actionID.isByteEqual(to: b.actionID)
    }

    public func hashExactly(into hasher: inout Hasher) {
        id.hashBytes(into: &hasher)
        actionID.hashBytes(into: &hasher)
        hasher.combine(co2e)
        hasher.combine(moneySaved)
        hasher.combine(period)
        hasher.combine(recordedAt)
    }
}
