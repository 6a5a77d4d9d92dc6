import CarbonModel
import CarbonStore
import Foundation

/// Reads the members of one JSON object of a request body, with the path of each for error
/// messages (`transactions[2].amount.currency`). Members not in `allowed` are refused.
struct Fields {
    let path: String
    private let members: [(key: String, value: JSONValue)]

    init(_ value: JSONValue, at path: String, allowed: [String]) throws(APIError) {
        guard case .object(let members) = value else {
            throw .invalid("expected an object, found \(value.kindName)", field: path.isEmpty ? nil : path)
        }
        for m in members where !allowed.contains(where: { $0.utf8.elementsEqual(m.key.utf8) }) {
            throw .invalid(
                "unknown field; the fields here are \(allowed.joined(separator: ", "))",
                field: Self.join(path, m.key))
        }
        self.path = path
        self.members = members
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func at(_ key: String) -> String { Self.join(path, key) }

    /// The member, or nil when it is absent or null.
    func optional(_ key: String) -> JSONValue? {
        guard let v = members.first(where: { $0.key == key })?.value else { return nil }
        if case .null = v { return nil }
        return v
    }

    func required(_ key: String) throws(APIError) -> JSONValue {
        guard let v = optional(key) else { throw .invalid("this field is required", field: at(key)) }
        return v
    }

    func string(_ key: String, maxBytes: Int = 4096) throws(APIError) -> String {
        try Self.string(try required(key), at: at(key), maxBytes: maxBytes)
    }

    func optionalString(_ key: String, maxBytes: Int = 4096) throws(APIError) -> String? {
        guard let v = optional(key) else { return nil }
        return try Self.string(v, at: at(key), maxBytes: maxBytes)
    }

    static func string(_ v: JSONValue, at path: String, maxBytes: Int = 4096) throws(APIError) -> String {
        guard case .string(let s) = v else {
            throw .invalid("expected a string, found \(v.kindName)", field: path)
        }
        guard s.utf8.count <= maxBytes else {
            throw .invalid("at most \(maxBytes) bytes of UTF-8, this one has \(s.utf8.count)", field: path)
        }
        return s
    }

    /// An id: a non-empty string of at most 256 bytes.
    func id(_ key: String) throws(APIError) -> String {
        let s = try string(key, maxBytes: 256)
        guard !s.isEmpty else { throw .invalid("must not be empty", field: at(key)) }
        return s
    }

    func time(_ key: String) throws(APIError) -> Timestamp { try Inputs.time(try required(key), at: at(key)) }

    func optionalTime(_ key: String) throws(APIError) -> Timestamp? {
        guard let v = optional(key) else { return nil }
        return try Inputs.time(v, at: at(key))
    }
}

/// The conversions from request JSON to model values, each refusing bad input with its path.
enum Inputs {
    /// The most bytes of UTF-8 a preference key or a transaction's metadata key may have.
    static let maxKeyBytes = 256

    static func time(_ v: JSONValue, at path: String) throws(APIError) -> Timestamp {
        let text = try Fields.string(v, at: path, maxBytes: 64)
        return try time(text, at: path)
    }

    static func time(_ text: String, at path: String) throws(APIError) -> Timestamp {
        guard let t = Timestamp(rfc3339: text) else {
            throw .invalid(
                "'\(text)' is not an RFC 3339 time with seconds and a zone, in the years 0001 to 9999, with seconds 00 to 59 (a leap second cannot be stored); write it like 2026-03-01T09:30:00Z or 2026-03-01T10:30:00.250+01:00",
                field: path)
        }
        guard t >= Timestamp.earliestISO, t <= Timestamp.latestISO else {
            throw .invalid("'\(text)' is outside the years 0001 to 9999 (UTC)", field: path)
        }
        return t
    }

    static func money(_ v: JSONValue, at path: String) throws(APIError) -> Money {
        let f = try Fields(v, at: path, allowed: ["amount", "currency"])
        let currencyText = try f.string("currency", maxBytes: 16)
        let currency: CurrencyCode
        do { currency = try CurrencyCode(validating: currencyText) } catch {
            throw .invalid(error.description, field: f.at("currency"))
        }
        let amountText = try f.string("amount", maxBytes: 64)
        do { return try Money(decimal: amountText, currency: currency) } catch {
            throw .invalid(error.description, field: f.at("amount"))
        }
    }

    static func kilograms(_ v: JSONValue, at path: String) throws(APIError) -> CO2e {
        let text: String
        switch v {
        case .string(let s): text = s
        case .number(let n):
            if n.contains(where: { $0 == "e" || $0 == "E" }) {
                // An exponent form (1e-3): the nearest milligram, as the JSON form reads numbers.
                guard let d = Double(n), d.isFinite, abs(d) < 9.2e12 else {
                    throw .invalid("\(n) kg is out of range", field: path)
                }
                let scaled = (d * 1_000_000).rounded()
                // As for the plain form: at most 6 decimals (whole milligrams), nothing rounded away.
                guard abs(scaled / 1_000_000 - d) <= abs(d) * 1e-15 else {
                    throw .invalid("\(n) kg has more than 6 decimals (whole milligrams)", field: path)
                }
                return CO2e(milligrams: Int64(scaled))
            }
            text = n
        default: throw .invalid("expected kilograms as a number, found \(v.kindName)", field: path)
        }
        do { return try CO2e(kilograms: text) } catch { throw .invalid(error.description, field: path) }
    }

    static func period(_ v: JSONValue, at path: String) throws(APIError) -> Period {
        let f = try Fields(v, at: path, allowed: ["start", "end"])
        let period = Period(start: try f.time("start"), end: try f.time("end"))
        guard period.start <= period.end else { throw .invalid("start is after end", field: path) }
        return period
    }

    static let transactionFields = [
        "id", "time", "amount", "merchant", "mcc", "category", "description", "accountId", "metadata",
    ]

    /// The whole number that a JSON number's text stands for (`5411`, `5411.0`, `5.411e3`,
    /// `541100e-2`, `0e99`), exactly, without floating point; nil when its value has a fraction
    /// (`5411.00000000000001`, `1e-400`) or more than 18 digits, or the text is longer than 256
    /// bytes.
    static func exactInteger(_ text: String) -> Int? {
        guard text.utf8.count <= 256 else { return nil }
        var rest = Substring(text)
        let negative = rest.first == "-"
        if negative { rest = rest.dropFirst() }
        var exponentText: Substring?
        if let e = rest.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponentText = rest[rest.index(after: e)...]
            rest = rest[..<e]
        }
        var exponent = 0
        var digits = Array(rest.utf8)
        if let dot = digits.firstIndex(of: UInt8(ascii: ".")) {
            exponent -= digits.count - dot - 1
            digits.remove(at: dot)
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else {
            return nil
        }
        while digits.first == UInt8(ascii: "0") { digits.removeFirst() }
        if digits.isEmpty { return 0 }  // zero, whatever the exponent
        if let exponentText {
            guard let x = Int(exponentText), abs(x) <= 1_000 else { return nil }
            exponent += x
        }
        // value = digits × 10^exponent: whole when the digits a negative exponent drops are zeros.
        if exponent < 0 {
            let dropped = min(-exponent, digits.count)
            guard digits.suffix(dropped).allSatisfy({ $0 == UInt8(ascii: "0") }) else { return nil }
            digits.removeLast(dropped)
        } else {
            guard digits.count + exponent <= 18 else { return nil }
            digits += repeatElement(UInt8(ascii: "0"), count: exponent)
        }
        guard digits.count <= 18 else { return nil }
        let magnitude = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return negative ? -magnitude : magnitude
    }

    static func transaction(_ v: JSONValue, at path: String) throws(APIError) -> Transaction {
        let f = try Fields(v, at: path, allowed: transactionFields)
        let id = try f.id("id")
        let time = try f.time("time")
        let amount = try money(try f.required("amount"), at: f.at("amount"))
        var mcc: UInt16?
        if let m = f.optional("mcc") {
            // An integer in JSON Schema's sense: a number whose fraction is zero (`5411`, `5411.0`,
            // `5.411e3`), as OpenAPI 3.1's `"type": "integer"` accepts.
            guard case .number(let text) = m, let n = Self.exactInteger(text), (0...9999).contains(n) else {
                throw .invalid("a merchant category code is an integer from 0 to 9999", field: f.at("mcc"))
            }
            mcc = UInt16(n)
        }
        var metadata = ExactDictionary<String>()
        if let m = f.optional("metadata") {
            guard case .object(let members) = m else {
                throw .invalid("expected an object of strings, found \(m.kindName)", field: f.at("metadata"))
            }
            let at = f.at("metadata") + "."
            for (key, value) in members {
                guard !key.isEmpty else { throw .invalid("a metadata key must not be empty", field: at) }
                // As preference keys: a key is held by every transaction that names it (a file
                // stores it once, the record in memory once per transaction written through here).
                guard key.utf8.count <= Self.maxKeyBytes else {
                    throw .invalid(
                        "a metadata key is at most \(Self.maxKeyBytes) bytes (this one has \(key.utf8.count))",
                        field: at + String(key.prefix(64)))
                }
                metadata[key] = try Fields.string(value, at: at + key)
            }
        }
        return Transaction(
            id: id, time: time, amount: amount, merchant: try f.optionalString("merchant"), mcc: mcc,
            category: try f.optionalString("category"), description: try f.optionalString("description"),
            accountID: try f.optionalString("accountId"), metadata: metadata)
    }

    static func footprint(_ v: JSONValue, at path: String) throws(APIError) -> Footprint {
        let f = try Fields(
            v, at: path,
            allowed: ["id", "transactionId", "period", "kgCO2e", "category", "methodology", "calculatedAt"])
        var transactionID: String?
        if f.optional("transactionId") != nil { transactionID = try f.id("transactionId") }
        return Footprint(
            id: try f.id("id"), transactionID: transactionID,
            period: try f.optional("period").map { (p) throws(APIError) in try period(p, at: f.at("period"))
            },
            co2e: try kilograms(try f.required("kgCO2e"), at: f.at("kgCO2e")),
            category: try f.string("category"), methodology: try f.string("methodology"),
            calculatedAt: try f.time("calculatedAt"))
    }

    static func saving(_ v: JSONValue, at path: String) throws(APIError) -> Saving {
        let f = try Fields(
            v, at: path, allowed: ["id", "actionId", "kgCO2e", "moneySaved", "period", "recordedAt"])
        return Saving(
            id: try f.id("id"), actionID: try f.id("actionId"),
            co2e: try kilograms(try f.required("kgCO2e"), at: f.at("kgCO2e")),
            moneySaved: try f.optional("moneySaved").map { (m) throws(APIError) in
                try money(m, at: f.at("moneySaved"))
            },
            period: try period(try f.required("period"), at: f.at("period")),
            recordedAt: try f.time("recordedAt"))
    }

    /// An answer in its JSON form (FORMAT.md, "JSON form").
    static func answer(_ v: JSONValue, at path: String) throws(APIError) -> Answer {
        switch v {
        case .string(let s):
            guard s.utf8.count <= 65536 else {
                throw .invalid("a text answer is at most 65536 bytes", field: path)
            }
            return .text(s)
        case .bool(let b): return .boolean(b)
        case .number(let n):
            guard let d = Double(n), d.isFinite else {
                throw .invalid("\(n) is out of the range of a 64-bit floating-point number", field: path)
            }
            return .number(d)
        case .array(let items):
            var choices: [String] = []
            for (i, item) in items.enumerated() {
                choices.append(try Fields.string(item, at: "\(path)[\(i)]"))
            }
            return .choices(choices)
        case .object:
            // {"number": "Infinity" | "-Infinity" | "NaN", "bits"?: "0x..."}: read by the model's own
            // JSON form, which checks the NaN bits.
            let f = try Fields(v, at: path, allowed: ["number", "bits"])
            let number = try f.string("number", maxBytes: 16)
            let bits = try f.optionalString("bits", maxBytes: 32)
            var text = "{\"number\":\"\(number)\""
            if let bits { text += ",\"bits\":\"\(bits)\"" }
            text += "}"
            guard number.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x22 && $0 != 0x5C }),
                bits?.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x22 && $0 != 0x5C }) ?? true,
                let answer = try? JSONDecoder().decode(Answer.self, from: Data(text.utf8))
            else {
                throw .invalid(
                    "an object answer is {\"number\": \"Infinity\"}, {\"number\": \"-Infinity\"} or {\"number\": \"NaN\", \"bits\": \"0x7ff8000000000000\"}",
                    field: path)
            }
            return answer
        case .null:
            throw .invalid("an answer must not be null", field: path)
        }
    }

    /// The items of `{"<name>": [ ... ]}`: 1 to `maxBatch` of them.
    static func batch(_ body: JSONValue, name: String, maxBatch: Int) throws(APIError) -> [JSONValue] {
        let f = try Fields(body, at: "", allowed: [name])
        guard case .array(let items) = try f.required(name) else {
            throw .invalid("expected an array", field: name)
        }
        guard !items.isEmpty else {
            throw .invalid("the batch is empty; send 1 to \(maxBatch) items", field: name)
        }
        guard items.count <= maxBatch else {
            throw .tooLarge(
                "a batch holds at most \(maxBatch) items, this one has \(items.count); split it",
                limit: maxBatch,
                field: name)
        }
        return items
    }
}
