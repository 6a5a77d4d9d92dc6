import CarbonModel
import Foundation

/// The one JSON form of a user record, shared by the command-line tool and the HTTP API:
/// camelCase keys, ISO 8601 times, money as decimal strings with their currency, and every answer
/// the binary format can hold, infinities and NaN (with its bits) included, as
/// `{"number": "Infinity"}` or `{"number": "NaN", "bits": "0x7ff8000000000000"}`.
/// Specified in docs/FORMAT.md, "JSON form"; `decode` reads it back bit for bit.
public enum RecordJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty
            ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch let error as DecodingError {
            throw InvalidRequestError("invalid JSON for \(T.self): \(describe(error))")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
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
