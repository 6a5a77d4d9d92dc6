import CarbonModel
import Foundation

/// The one JSON form of a user record, shared by the command-line tool and the HTTP API:
/// camelCase keys, ISO 8601 times, money as decimal strings with their currency, and every answer
/// the binary format can hold, infinities and NaN (with its bits) included, as
/// `{"number": "Infinity"}` or `{"number": "NaN", "bits": "0x7ff8000000000000"}`.
/// Specified in docs/FORMAT.md, "JSON form"; `decode` reads it back bit for bit.
///
/// Keys of `ExactDictionary` objects (preferences, transaction metadata) are kept byte for byte,
/// both ways, even when two of them are canonically equivalent (`"\u{E9}"` and `"e\u{301}"`), which
/// Foundation's coders alone would merge: such keys travel through the coders as placeholders (see
/// `ExactJSONKeys`) and are put back in the text (`encode`) or in the dictionary (`decode`).
public enum RecordJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
        try encode(value, pretty: pretty, marker: newMarker)
    }

    /// The largest JSON text `encode` writes, in bytes (escapes counted, indentation not): a
    /// larger answer is refused with `AnswerTooLargeError` before any of it is written, in time and
    /// memory bounded by this. 128 MiB: eight times the decoded size of the largest record a file
    /// may hold (`RecordCodec.Limits.maxDecodedSize`), which only strings used by many rows reach.
    public static let maximumTextBytes = 128 << 20

    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        try decode(type, from: text, marker: newMarker)
    }

    /// A fresh placeholder marker: letters and digits, 128 random bits.
    static func newMarker() -> String {
        func hex(_ n: UInt64) -> String {
            let s = String(n, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return "xk" + hex(.random(in: .min ... .max)) + hex(.random(in: .min ... .max))
    }

    /// Tries this many markers before giving up (a marker is only refused when the data holds it).
    static let markerAttempts = 4

    static func encode<T: Encodable>(
        _ value: T, pretty: Bool, marker: () -> String, limit: Int = maximumTextBytes
    ) throws -> String {
        try JSONSizeBound.check(value, limit: limit)
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty
            ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        for _ in 0..<markerAttempts {
            let table = ExactJSONKeys(marker: marker())
            encoder.userInfo[ExactJSONKeys.userInfoKey] = table
            let data = try encoder.encode(value)
            let keys = table.keys
            // No dictionary needed a placeholder: the encoder's text as it is.
            if keys.isEmpty { return String(decoding: data, as: UTF8.self) }
            if let text = try replacingPlaceholders(in: Array(data), marker: table.marker, keys: keys) {
                return text
            }
        }
        throw EncodingError.invalidValue(
            value,
            EncodingError.Context(
                codingPath: [],
                debugDescription:
                    "could not write the canonically equivalent keys of a \(T.self) apart: the data holds every placeholder marker tried"
            ))
    }

    /// The text with each placeholder key `"<marker><number>"` replaced by the JSON string of its
    /// key, escaped as the encoder escapes keys; nil unless every placeholder is there exactly once
    /// and the marker occurs nowhere else (then the data holds the marker, and another is tried).
    static func replacingPlaceholders(in bytes: [UInt8], marker: String, keys: [String]) throws -> String? {
        let m = Array(marker.utf8)
        let digits = ExactJSONKeys.placeholderDigits
        let quote = UInt8(ascii: "\"")
        let keyEncoder = JSONEncoder()
        keyEncoder.outputFormatting = [.withoutEscapingSlashes]
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + keys.reduce(0) { $0 + $1.utf8.count })
        var seen = [Bool](repeating: false, count: keys.count)
        var copied = 0
        var from = 0
        while let p = firstIndex(of: m, in: bytes, from: from) {
            let end = p + m.count + digits
            guard p > 0, bytes[p - 1] == quote, end < bytes.count, bytes[end] == quote else { return nil }
            var n = 0
            for d in bytes[(p + m.count)..<end] {
                guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") else { return nil }
                n = n * 10 + Int(d - UInt8(ascii: "0"))
            }
            guard n < keys.count, !seen[n] else { return nil }
            seen[n] = true
            out.append(contentsOf: bytes[copied..<(p - 1)])
            out.append(contentsOf: try keyEncoder.encode(keys[n]))
            copied = end + 1
            from = end + 1
        }
        guard seen.allSatisfy({ $0 }) else { return nil }
        out.append(contentsOf: bytes[copied...])
        return String(decoding: out, as: UTF8.self)
    }

    /// The first position at or after `from` where `needle` (not empty) starts in `bytes`.
    static func firstIndex(of needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, bytes.count >= needle.count else { return nil }
        var i = from
        while i <= bytes.count - needle.count {
            if bytes[i] == first, bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    static func decode<T: Decodable>(_ type: T.Type, from text: String, marker: () -> String) throws -> T {
        var input = Array(text.utf8)
        var table: ExactJSONKeys?
        var spellings: [[String]] = []
        if let rewrite = try placeholdersForClashingKeys(in: input, marker: marker) {
            input = rewrite.text
            table = rewrite.table
            spellings = rewrite.spellings
        }
        let decoder = JSONDecoder()
        if let table { decoder.userInfo[ExactJSONKeys.userInfoKey] = table }
        let value: T
        do {
            value = try decoder.decode(type, from: Data(input))
        } catch let error as DecodingError {
            throw InvalidRequestError("invalid JSON for \(T.self): \(describe(error, table: table))")
        }
        // A placeholder no dictionary took back stood in an object of fixed names (a struct's),
        // which would have merged the keys: refused rather than one of them dropped.
        if let table, let unused = Set(spellings.indices).subtracting(table.used).min() {
            let codes = spellings[unused].map { "(\(DisplayText.scalarCodes($0)))" }.joined(
                separator: " and ")
            throw InvalidRequestError(
                "invalid JSON for \(T.self): the keys \(codes) of one object are canonically equivalent but distinct, and only the maps (preferences, metadata) can keep both; spell the keys of other objects once"
            )
        }
        return value
    }

    /// The input with every key that is canonically equivalent to another, byte-distinct key of the
    /// same object replaced by a placeholder, and the table of those keys; nil when there are none
    /// (or the text is not JSON, which the decoder then reports). `spellings[i]` lists the distinct
    /// spellings of the keys clashing with key `i`, for the error messages.
    static func placeholdersForClashingKeys(in bytes: [UInt8], marker: () -> String) throws -> (
        text: [UInt8], table: ExactJSONKeys, spellings: [[String]]
    )? {
        // Keys are canonically equivalent only if byte-equal unless one holds a non-ASCII scalar.
        guard
            bytes.contains(where: { $0 >= 0x80 })
                || firstIndex(of: Array(#"\u"#.utf8), in: bytes, from: 0) != nil,
            let objects = JSONKeyScan.objects(in: bytes)
        else { return nil }
        var replaced: [(range: Range<Int>, number: Int)] = []
        var keys: [String] = []
        var spellings: [[String]] = []
        for object in objects {
            var groups: [String: [Int]] = [:]
            for (i, key) in object.enumerated() { groups[key.text, default: []].append(i) }
            for members in groups.values where members.count > 1 {
                var numbers: [ExactString: Int] = [:]
                for i in members {
                    numbers[ExactString(object[i].text)] = numbers[ExactString(object[i].text)] ?? -1
                }
                guard numbers.count > 1 else { continue }  // the same bytes repeated: no clash
                let distinct = numbers.keys.sorted().map(\.string)
                for i in members {
                    let k = ExactString(object[i].text)
                    if numbers[k] == -1 {
                        numbers[k] = keys.count
                        keys.append(k.string)
                        spellings.append(distinct)
                    }
                    replaced.append((object[i].range, numbers[k]!))
                }
            }
        }
        guard !keys.isEmpty else { return nil }
        let allKeys = objects.joined()
        for _ in 0..<markerAttempts {
            let m = marker()
            let mb = Array(m.utf8)
            guard firstIndex(of: mb, in: bytes, from: 0) == nil,
                !allKeys.contains(where: { firstIndex(of: mb, in: Array($0.text.utf8), from: 0) != nil })
            else { continue }
            let table = ExactJSONKeys(marker: m, keys: keys)
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            var copied = 0
            for (range, number) in replaced.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
                out.append(contentsOf: bytes[copied..<range.lowerBound])
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: table.placeholder(number: number).utf8)
                out.append(UInt8(ascii: "\""))
                copied = range.upperBound
            }
            out.append(contentsOf: bytes[copied...])
            return (out, table, spellings)
        }
        throw InvalidRequestError("invalid JSON: the data holds every placeholder marker tried; try again")
    }

    static func describe(_ error: DecodingError, table: ExactJSONKeys? = nil) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { key in
                key.intValue.map { "[\($0)]" }
                    ?? "." + (table?.key(forPlaceholder: key.stringValue) ?? key.stringValue)
            }.joined()
            return p.isEmpty ? "" : " at \(p)"
        }
        switch error {
        case .dataCorrupted(let c): return c.debugDescription + path(c)
        case .keyNotFound(let k, let c): return "missing '\(k.stringValue)'" + path(c)
        case .typeMismatch(let t, let c): return "expected \(t)" + path(c)
        case .valueNotFound(let t, let c): return "missing \(t)" + path(c)
        @unknown default: return String(describing: error)
        }
    }
}

/// The keys of the objects of a JSON text, found without building its values.
package enum JSONKeyScan {
    struct Key {
        /// The key's string token in the text, quotes included.
        var range: Range<Int>
        /// The key, escapes decoded.
        var text: String
    }

    /// The keys of each object that has any, in the order the objects close; nil if the
    /// text is not JSON as far as the scan can tell (unbalanced brackets, an unterminated string, a
    /// bad escape or lone surrogate). Iterative, so that deep nesting cannot exhaust the stack.
    static func objects(in b: [UInt8]) -> [[Key]]? {
        enum Frame {
            case object(keys: [Key], expectsKey: Bool)
            case array
        }
        var stack: [Frame] = []
        var result: [[Key]] = []
        var i = 0
        while i < b.count {
            switch b[i] {
            case UInt8(ascii: "{"):
                stack.append(.object(keys: [], expectsKey: true))
                i += 1
            case UInt8(ascii: "}"):
                guard case .object(let keys, _)? = stack.popLast() else { return nil }
                if !keys.isEmpty { result.append(keys) }
                i += 1
            case UInt8(ascii: "["):
                stack.append(.array)
                i += 1
            case UInt8(ascii: "]"):
                guard case .array? = stack.popLast() else { return nil }
                i += 1
            case UInt8(ascii: ","):
                if case .object(let keys, _)? = stack.last {
                    stack[stack.count - 1] = .object(keys: keys, expectsKey: true)
                }
                i += 1
            case UInt8(ascii: "\""):
                if case .object(var keys, true)? = stack.last {
                    guard let token = string(in: b, at: i, decoding: true), let text = token.text else {
                        return nil
                    }
                    keys.append(Key(range: i..<token.end, text: text))
                    stack[stack.count - 1] = .object(keys: keys, expectsKey: false)
                    i = token.end
                } else {
                    guard let token = string(in: b, at: i, decoding: false) else { return nil }
                    i = token.end
                }
            default:
                i += 1
            }
        }
        return stack.isEmpty ? result : nil
    }

    /// The end of the string token starting at `start` (a quote), and its text if `decoding`.
    static func string(in b: [UInt8], at start: Int, decoding: Bool) -> (end: Int, text: String?)? {
        var i = start + 1
        var plain = true
        while i < b.count {
            switch b[i] {
            case UInt8(ascii: "\""):
                guard decoding else { return (i + 1, nil) }
                if plain { return (i + 1, String(decoding: b[(start + 1)..<i], as: UTF8.self)) }
                guard let text = unescaped(b[(start + 1)..<i]) else { return nil }
                return (i + 1, text)
            case UInt8(ascii: "\\"):
                plain = false
                i += 2
            default:
                i += 1
            }
        }
        return nil
    }

    static let simpleEscapes: [UInt8: UInt8] = [
        UInt8(ascii: "\""): 0x22, UInt8(ascii: "\\"): 0x5C, UInt8(ascii: "/"): 0x2F,
        UInt8(ascii: "b"): 0x08, UInt8(ascii: "f"): 0x0C, UInt8(ascii: "n"): 0x0A,
        UInt8(ascii: "r"): 0x0D, UInt8(ascii: "t"): 0x09,
    ]

    /// The content of a string token with its escapes decoded; nil for a bad escape.
    package static func unescaped(_ s: ArraySlice<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = s.startIndex
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= s.endIndex else { return nil }
            var v: UInt32 = 0
            for c in s[at..<(at + 4)] {
                guard let d = Character(Unicode.Scalar(c)).hexDigitValue else { return nil }
                v = v * 16 + UInt32(d)
            }
            return v
        }
        while i < s.endIndex {
            let c = s[i]
            guard c == UInt8(ascii: "\\") else {
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < s.endIndex else { return nil }
            if let byte = simpleEscapes[s[i + 1]] {
                out.append(byte)
                i += 2
                continue
            }
            guard s[i + 1] == UInt8(ascii: "u"), var v = hex4(i + 2) else { return nil }
            i += 6
            if (0xD800..<0xDC00).contains(v) {
                guard i + 1 < s.endIndex, s[i] == UInt8(ascii: "\\"), s[i + 1] == UInt8(ascii: "u"),
                    let low = hex4(i + 2), (0xDC00..<0xE000).contains(low)
                else { return nil }
                v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            }
            guard let scalar = Unicode.Scalar(v) else { return nil }  // a lone low surrogate
            out.append(contentsOf: String(Character(scalar)).utf8)
        }
        return String(decoding: out, as: UTF8.self)
    }
}
