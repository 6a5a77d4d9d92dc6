import CarbonModel
import Foundation

/// An answer whose JSON text would be larger than `RecordJSON.maximumTextBytes`: the value holds
/// that much text. (A user file stores each string once, however many rows use it, so a small file
/// can hold a record whose text is gigabytes.) Nothing was written; read it a part at a time.
public struct AnswerTooLargeError: CarbonStoreError, Hashable {
    /// What the text was counted to when the count passed the limit (the whole text is larger).
    public var atLeast: Int
    public var limit: Int

    public init(atLeast: Int, limit: Int) {
        self.atLeast = atLeast
        self.limit = limit
    }

    public var kind: ErrorKind { .invalidInput }

    public var description: String {
        "the answer is too large to write whole: its JSON text would be more than \(atLeast) bytes, over the limit of \(limit); read the user a part at a time (over HTTP: the lists, such as GET /v1/users/{userId}/transactions, with a smaller limit and their cursor)"
    }
}

/// Counts the bytes of the JSON text that a value is written as, without writing it, and throws
/// `AnswerTooLargeError` as soon as the count passes a limit: the work and memory of the count are
/// bounded by the limit, not by the text. Strings and keys count their UTF-8 bytes and quotes,
/// numbers and literals their characters, separators one byte each, so the count is at most the
/// text's size (escapes and indentation only add to it).
struct JSONSizeBound: Encoder {
    final class Tally {
        var bytes = 0
        let limit: Int
        init(limit: Int) { self.limit = limit }

        func add(_ n: Int) throws {
            bytes += n
            if bytes > limit { throw AnswerTooLargeError(atLeast: bytes, limit: limit) }
        }

        /// A value: a string with its quotes and escapes, anything else as `size(of:)` counts it.
        func add(value: Any) throws {
            if let s = value as? String { try add(string: s) } else { try add(JSONSizeBound.size(of: value)) }
        }

        /// A string as the encoder writes it: its UTF-8 bytes and quotes, and one byte more for each
        /// `"` and `\\` and for `\n`, `\r`, `\t`, `\b`, `\f`, five more for any other control
        /// character (`\u0001`). Its bytes are read only while the count is within the limit, so at
        /// most the limit's worth in all.
        func add(string s: String) throws {
            try add(s.utf8.count + 2)
            var extra = 0
            for b in s.utf8 {
                switch b {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x08, 0x09, 0x0A, 0x0C, 0x0D: extra += 1
                case 0..<0x20: extra += 5
                default: continue
                }
            }
            try add(extra)
        }
    }

    let tally: Tally
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    /// Throws `AnswerTooLargeError` when `value`'s JSON text would be more than `limit` bytes.
    static func check(_ value: some Encodable, limit: Int) throws {
        let keys = ExactJSONKeys(marker: "k")
        let tally = Tally(limit: limit)
        try value.encode(to: JSONSizeBound(tally: tally, userInfo: [ExactJSONKeys.userInfoKey: keys]))
        // Keys that stood under placeholders (canonically equivalent keys of one object) are written
        // in full, escaped, instead of the placeholder counted.
        let placeholder = keys.marker.utf8.count + ExactJSONKeys.placeholderDigits + 2
        for key in keys.keys {
            tally.bytes -= placeholder
            try tally.add(string: key)
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(Keyed<Key>(encoder: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer { Unkeyed(encoder: self) }

    func singleValueContainer() -> any SingleValueEncodingContainer { Single(encoder: self) }

    /// A value's bytes other than a string's (`Tally.add(string:)`): an integer's digits, a
    /// literal's letters; one for a floating-point number (the encoder chooses its digits).
    static func size(of value: Any) -> Int {
        switch value {
        case let b as Bool: return b ? 4 : 5
        case is Double, is Float: return 1
        default: return "\(value)".utf8.count
        }
    }

    /// A nested value: its own braces or brackets and whatever it holds.
    func nested<T: Encodable>(_ value: T) throws {
        try value.encode(to: self)
    }

    /// The single-value and the unkeyed container: each value of a primitive type is `add`ed.
    protocol Counting {
        mutating func add(_ value: Any) throws
    }

    struct Single: SingleValueEncodingContainer, Counting {
        let encoder: JSONSizeBound
        var codingPath: [any CodingKey] { encoder.codingPath }

        mutating func add(_ value: Any) throws { try encoder.tally.add(value: value) }
        mutating func encodeNil() throws { try encoder.tally.add(4) }
        mutating func encode<T: Encodable>(_ value: T) throws { try encoder.nested(value) }
    }

    struct Unkeyed: UnkeyedEncodingContainer, Counting {
        let encoder: JSONSizeBound
        var codingPath: [any CodingKey] { encoder.codingPath }
        var count = 0

        init(encoder: JSONSizeBound) {
            self.encoder = encoder
            try? encoder.tally.add(2)
        }

        /// A member: its comma (after the first), and the value.
        mutating func add(_ value: Any) throws {
            try member()
            try encoder.tally.add(value: value)
        }
        mutating func member() throws {
            if count > 0 { try encoder.tally.add(1) }
            count += 1
        }
        mutating func encodeNil() throws {
            try member()
            try encoder.tally.add(4)
        }
        mutating func encode<T: Encodable>(_ value: T) throws {
            try member()
            try encoder.nested(value)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
            -> KeyedEncodingContainer<NestedKey>
        {
            try? member()
            return encoder.container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            try? member()
            return Unkeyed(encoder: encoder)
        }
        mutating func superEncoder() -> any Encoder { encoder }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: JSONSizeBound
        var codingPath: [any CodingKey] { encoder.codingPath }
        /// Members so far, shared by the copies of this container that an encoder hands out.
        let members = Tally(limit: .max)

        init(encoder: JSONSizeBound) {
            self.encoder = encoder
            try? encoder.tally.add(2)
        }

        /// A member's key, its quotes and colon, and the comma before it (after the first).
        func key(_ key: Key) throws {
            try encoder.tally.add(string: key.stringValue)
            try encoder.tally.add(members.bytes > 0 ? 2 : 1)
            try members.add(1)
        }
        func add(_ value: Any, _ key: Key) throws {
            try self.key(key)
            try encoder.tally.add(value: value)
        }
        mutating func encodeNil(forKey key: Key) throws {
            try self.key(key)
            try encoder.tally.add(4)
        }
        mutating func encode(_ value: Bool, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: String, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Double, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Float, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Int, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { try add(value, key) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { try add(value, key) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try self.key(key)
            try encoder.nested(value)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
            -> KeyedEncodingContainer<NestedKey>
        {
            try? self.key(key)
            return encoder.container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            try? self.key(key)
            return Unkeyed(encoder: encoder)
        }
        mutating func superEncoder() -> any Encoder { encoder }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            try? self.key(key)
            return encoder
        }
    }
}

extension JSONSizeBound.Counting {
    mutating func encode(_ value: Bool) throws { try add(value) }
    mutating func encode(_ value: String) throws { try add(value) }
    mutating func encode(_ value: Double) throws { try add(value) }
    mutating func encode(_ value: Float) throws { try add(value) }
    mutating func encode(_ value: Int) throws { try add(value) }
    mutating func encode(_ value: Int8) throws { try add(value) }
    mutating func encode(_ value: Int16) throws { try add(value) }
    mutating func encode(_ value: Int32) throws { try add(value) }
    mutating func encode(_ value: Int64) throws { try add(value) }
    mutating func encode(_ value: UInt) throws { try add(value) }
    mutating func encode(_ value: UInt8) throws { try add(value) }
    mutating func encode(_ value: UInt16) throws { try add(value) }
    mutating func encode(_ value: UInt32) throws { try add(value) }
    mutating func encode(_ value: UInt64) throws { try add(value) }
}
